"""The kinds of mail the service sends and, for each, what its templates may use.

One place for the variables each sender passes to `outbox.enqueue` (read from the call
sites: invitations, consent mailing, privacy requests, restriction, portal sign-in): an
organization's own template is checked against them when it is stored, and previewed with
the sample values here. A sender that passes a new variable adds it here too, or templates
using it are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The fields of each purpose in `purposes` (consent/mailing.py `_purposes`).
PURPOSE_FIELDS = frozenset({"name", "description", "notice_url"})

_SAMPLE_PURPOSES = [
    {
        "name": "Monthly newsletter",
        "description": "News about our products, once a month.",
        "notice_url": "https://example.com/privacy/2026-01",
    },
    {
        "name": "Event invitations",
        "description": "Invitations to our events near you.",
        "notice_url": "https://example.com/privacy/2026-01",
    },
]


@dataclass(frozen=True, eq=False)
class MailKind:
    """A kind of mail: the variables its sender passes, with sample values for previews.

    `lists` names the variables that are lists of mappings, each with `item_fields`: the
    only variables a template may loop over, and the only attributes it may read. Compared
    by identity (each kind is made once), which makes it a cache key for compiled templates.
    """

    name: str
    sample: Mapping[str, object]
    lists: frozenset[str] = frozenset()
    item_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(self.sample)


_ORGANIZATION = {"organization_name": "Example Ltd"}
_CONSENT = {
    **_ORGANIZATION,
    "link": "https://crm.example.com/consent/SAMPLE-TOKEN",
    "purposes": _SAMPLE_PURPOSES,
    "deadline": "2026-12-31 17:00 UTC",
}
_PRIVACY_REQUEST = {
    **_ORGANIZATION,
    "request_type": "access to your data",
    "received_on": "2026-12-01",
    "due_on": "2027-01-01",
    "reason": "We need more time to gather every record we hold.",
}

MAIL_KINDS: dict[str, MailKind] = {
    kind.name: kind
    for kind in (
        MailKind(
            "consent_request",
            _CONSENT,
            lists=frozenset({"purposes"}),
            item_fields=PURPOSE_FIELDS,
        ),
        MailKind(
            "consent_reminder",
            _CONSENT,
            lists=frozenset({"purposes"}),
            item_fields=PURPOSE_FIELDS,
        ),
        MailKind(
            "optin_confirm",
            {
                **_ORGANIZATION,
                "link": "https://crm.example.com/forms/confirm/SAMPLE-TOKEN",
                "form_name": "Newsletter sign-up",
                "purposes": _SAMPLE_PURPOSES,
                "valid_hours": 48,
            },
            lists=frozenset({"purposes"}),
            item_fields=PURPOSE_FIELDS,
        ),
        MailKind(
            "portal_code",
            {
                **_ORGANIZATION,
                "code": "123456",
                "valid_minutes": 10,
                "link": "https://crm.example.com/portal/SAMPLE-ORGANIZATION",
            },
        ),
        MailKind("privacy_request_extended", _PRIVACY_REQUEST),
        MailKind(
            "privacy_request_rejected",
            {**_PRIVACY_REQUEST, "reason": "We could not confirm that the request is yours."},
        ),
        MailKind(
            "privacy_request_completed",
            {
                **_ORGANIZATION,
                "request_type": "access to your data",
                "received_on": "2026-12-01",
                "completed_on": "2026-12-10",
                "outcome": "Your data is ready to download in our privacy portal until 2026-12-17.",
                "portal_link": "https://crm.example.com/portal/SAMPLE-ORGANIZATION",
            },
        ),
        MailKind("restriction_lifted", {**_ORGANIZATION, "since": "2026-11-02"}),
        MailKind(
            "user_invitation",
            {
                **_ORGANIZATION,
                "accept_url": "https://crm.example.com/invitations/accept#token=SAMPLE-TOKEN",
                "valid_hours": 72,
            },
        ),
    )
}
