"""The disclosure policy: the one place that decides who sees what of a record.

For a principal and a *channel* (`screen` for signed-in users, `api` for partner clients,
`export`, `integrations`) each field of a record is shown, masked or withheld:

- **masked**: answered as null and named in `masked_fields`, because the caller's profile lacks
  `view_sensitive` (a partner client has no profile, so it never sees sensitive values);
- **withheld**: left out of the response and named in `withheld_fields`, because the
  organization's compliance settings block the field's classification on the channel;
- **shown** otherwise.

A caller may neither set nor filter on a field they may not see: an exact-match filter would
tell them its value. Showing a stored sensitive value is a reveal, and a response that reveals
any writes one `record.sensitive_revealed` event: `target_type` the module of the response
(a conversion's is the lead's), `target_ids` every record whose values it revealed,
`target_id` that record when it is one, `fields` the sensitive fields shown, `reason` the kind
of response (record, list, history, conversion, package). Values the caller sent in the same request
are no reveal.

Every response that carries a record's values goes through :class:`DisclosurePolicy`; the
read schemas refuse a record it has not decided (:func:`disclosure_of`), so a path that
forgets it fails loudly instead of showing everything.

A response to a partner client that carries a lead's or contact's data is a disclosure to a
recipient (GDPR Art. 19: rectification, erasure and restriction are told to every recipient):
the policy notes the data subjects it showed, and the commit writes one `partner_disclosures`
row per client and subject, the first time (insert-or-ignore; a process remembers what it has
written, so a partner reading the same subjects again costs no statement).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryItem
from crm_service.audit.service import record as audit
from crm_service.db.base import utcnow
from crm_service.db.session import on_transaction_end
from crm_service.errors import Forbidden, ServiceUnavailable
from crm_service.kit.modules import Module
from crm_service.orgs.repository import compliance_settings
from crm_service.records.fields import Classification
from crm_service.records.repository import (
    RecordRepository,
    add_partner_disclosures,
    subjects_with_keys,
)
from crm_service.records.storage import RecordStorage
from crm_service.security.principal import Principal

# Where a record carries what the policy decided for the response it is in.
_DISCLOSED = "_disclosed"


class Channel(StrEnum):
    """How record values leave the service."""

    SCREEN = "screen"  # responses to signed-in users
    API = "api"  # responses to partner clients (OAuth tokens)
    EXPORT = "export"
    INTEGRATIONS = "integrations"  # webhooks


class View(StrEnum):
    """The kind of response that shows the values: the `reason` of a reveal event."""

    RECORD = "record"  # get, create, update
    LIST = "list"  # list, search
    HISTORY = "history"
    CONVERSION = "conversion"
    PACKAGE = "package"  # a data subject's access or portability package


def partner_of(principal: Principal) -> str | None:
    """The id of the partner client `principal` is (a client's token without a profile), or
    None."""
    if principal.client_id is not None and principal.permissions is None:
        return principal.client_id
    return None


def channel_of(principal: Principal) -> Channel:
    """The channel a response to `principal` leaves by: a partner client's token (a client
    without a profile) reads through the api, a signed-in user on the screen."""
    return Channel.API if partner_of(principal) is not None else Channel.SCREEN


# -- to whom: partner clients shown a data subject's data -----------------------------------

Disclosure = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # organization, client, subject
_PARTNER_PENDING = "partner_disclosures_pending"
_PARTNER_WRITTEN = "partner_disclosures_written"
# What this process has seen committed; cleared when full (the table is the truth: a row
# written again is ignored).
_COMMITTED: set[Disclosure] = set()
_COMMITTED_MAX = 200_000


def note_partner_disclosure(
    session: AsyncSession, principal: Principal, subject_ids: Iterable[uuid.UUID | None]
) -> None:
    """Note that the response to `principal`, if a partner client, carries these data
    subjects' data; the commit records it (see the module's docstring)."""
    partner = partner_of(principal)
    if partner is None:
        return
    client_id = uuid.UUID(partner)
    organization_id = principal.organization_id
    fresh = {
        (organization_id, client_id, subject_id)
        for subject_id in subject_ids
        if subject_id is not None
    } - _COMMITTED
    if fresh:
        session.info.setdefault(_PARTNER_PENDING, set()).update(fresh)


class ChangedMeanwhile(ServiceUnavailable):
    """A privacy request changed or erased a data subject of this response while it was being
    prepared: nothing is sent (asking again answers with what holds now)."""

    slug, title = "changed-meanwhile", "Changed meanwhile"

    def __init__(self) -> None:
        super().__init__(
            "A privacy request changed a data subject of this response while it was being "
            "prepared; ask again.",
            headers={"Retry-After": "1"},
        )


def _lock_not_available(exc: DBAPIError) -> bool:
    cause = getattr(exc.orig, "__cause__", None)
    return "55P03" in (getattr(exc.orig, "sqlstate", None), getattr(cause, "sqlstate", None))


async def _write_partner_disclosures(session: AsyncSession) -> None:
    """Record the noted disclosures, then make sure none of their subjects was erased, or is
    being changed by a privacy request, meanwhile: that request reads the recipients once it
    holds the subjects' keys (`hold_subjects`), so a disclosure either commits before and is
    listed, or is refused here and sends nothing (503 `changed-meanwhile`)."""
    pending: set[Disclosure] | None = session.info.pop(_PARTNER_PENDING, None)
    if not pending:
        return
    await add_partner_disclosures(session, sorted(pending), utcnow())
    by_organization: dict[uuid.UUID, set[uuid.UUID]] = {}
    for organization_id, _client, subject_id in pending:
        by_organization.setdefault(organization_id, set()).add(subject_id)
    for organization_id, subject_ids in sorted(by_organization.items()):
        try:
            held = await subjects_with_keys(session, organization_id, sorted(subject_ids))
        except DBAPIError as exc:
            if _lock_not_available(exc):
                raise ChangedMeanwhile() from None
            raise
        if subject_ids - held:
            raise ChangedMeanwhile()
    session.info[_PARTNER_WRITTEN] = pending


def _forget_partner_disclosures(session: AsyncSession) -> None:
    session.info.pop(_PARTNER_PENDING, None)
    session.info.pop(_PARTNER_WRITTEN, None)


on_transaction_end(
    before_commit=_write_partner_disclosures, on_rollback=_forget_partner_disclosures
)


@sa_event.listens_for(Session, "after_commit")
def _remember_committed(session: Session) -> None:
    written: set[Disclosure] | None = session.info.pop(_PARTNER_WRITTEN, None)
    if written:
        if len(_COMMITTED) + len(written) > _COMMITTED_MAX:
            _COMMITTED.clear()
        _COMMITTED.update(written)


@sa_event.listens_for(Session, "after_rollback")
def _not_committed(session: Session) -> None:
    session.info.pop(_PARTNER_WRITTEN, None)


async def withheld_classifications(
    session: AsyncSession, organization_id: uuid.UUID, channel: Channel
) -> frozenset[Classification]:
    """The classifications the organization withholds on `channel`.

    The compliance settings (`/v1/settings/compliance`: per channel, the classifications
    withheld; none by default). Read from the database for every policy (one primary-key
    lookup per request or export or delivery; for a partner's request, in the token's own
    statement), never cached in the process, so a change holds on every instance's next
    request. The screen is never withheld from: the settings name
    only export, api and integrations.
    """
    if channel is Channel.SCREEN:
        return frozenset()
    found = await compliance_settings(session, organization_id)
    return _withheld_in(None if found is None else found.withhold, channel)


def _withheld_in(withhold: str | None, channel: Channel) -> frozenset[Classification]:
    """What stored compliance settings withhold on a leaving channel (not the screen)."""
    if withhold is None:
        return frozenset()
    return frozenset(Classification(name) for name in parse_withhold(withhold)[channel])


def parse_withhold(text: str | None) -> dict[Channel, list[str]]:
    """The stored compliance settings: every leaving channel, with its withheld classes."""
    stored = json.loads(text or "{}")
    return {
        channel: sorted(stored.get(channel.value, []))
        for channel in (Channel.API, Channel.EXPORT, Channel.INTEGRATIONS)
    }


@dataclass(frozen=True)
class FieldDisclosure:
    """What one caller sees of one module's fields on one channel."""

    masked: tuple[str, ...] = ()
    withheld: tuple[str, ...] = ()

    @property
    def hidden(self) -> frozenset[str]:
        return frozenset(self.masked) | frozenset(self.withheld)


def disclosure_of(record: Any) -> FieldDisclosure:
    """What the policy decided for `record` in this response."""
    try:
        disclosure: FieldDisclosure = record.__dict__[_DISCLOSED]
    except KeyError:
        raise RuntimeError(
            f"a {type(record).__name__} is being shown without the disclosure policy"
        ) from None
    return disclosure


@dataclass(frozen=True)
class Shown:
    """Records of one module in a response, and the fields the caller sent for them in the
    same request (showing those back reveals nothing)."""

    repository: RecordRepository[Any]
    records: Sequence[Any]
    sent: frozenset[str] = frozenset()


class DisclosurePolicy:
    """The policy for one caller on one channel, within one request."""

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        channel: Channel | None = None,
        *,
        withheld: frozenset[Classification] | None = None,
    ) -> None:
        """`withheld`: the classifications the compliance settings withhold on `channel`,
        when this unit of work already read them (`withheld_classifications`), as a batch
        of webhook deliveries does once for all of them."""
        self.session = session
        self.principal = principal
        self.channel = channel or channel_of(principal)
        self._withheld: frozenset[Classification] | None = withheld

    @property
    def sees_sensitive(self) -> bool:
        permissions = self.principal.permissions
        return permissions is not None and permissions.view_sensitive

    async def _classes(self) -> frozenset[Classification]:
        if self._withheld is None:
            if self.channel is not Channel.SCREEN and self.principal.compliance_read:
                # Read with the partner's token, in this request: as fresh as a read now.
                self._withheld = _withheld_in(self.principal.compliance_withhold, self.channel)
            else:
                self._withheld = await withheld_classifications(
                    self.session, self.principal.organization_id, self.channel
                )
        return self._withheld

    async def fields(self, storage: RecordStorage) -> FieldDisclosure:
        """What the caller sees of the fields of `storage`'s module. Every sensitive field is
        masked for a caller without `view_sensitive`, whether or not a record holds a value,
        so the response says the same thing whatever is stored."""
        classification = await storage.classification()
        withheld_classes = await self._classes()
        withheld = sorted(name for name, c in classification.items() if c in withheld_classes)
        masked = (
            []
            if self.sees_sensitive
            else sorted(
                name
                for name, c in classification.items()
                if c is Classification.SENSITIVE and name not in withheld
            )
        )
        return FieldDisclosure(masked=tuple(masked), withheld=tuple(withheld))

    async def _revealable(self, storage: RecordStorage) -> tuple[FieldDisclosure, list[str]]:
        """The module's disclosure, and the sensitive fields it lets the caller see."""
        disclosure = await self.fields(storage)
        classification = await storage.classification()
        shown = [
            name
            for name, c in classification.items()
            if c is Classification.SENSITIVE and name not in disclosure.hidden
        ]
        return disclosure, shown

    async def refuse_hidden_input(self, storage: RecordStorage, names: Iterable[str]) -> None:
        """403 when the caller sets or filters on a field they may not see."""
        names = set(names)
        if not names:
            return  # nothing set or filtered on: nothing to refuse (and nothing to read)
        disclosure = await self.fields(storage)
        masked = sorted(names & set(disclosure.masked))
        if masked:
            raise Forbidden(
                f"Your profile does not allow setting or filtering on the sensitive field(s) "
                f"{', '.join(masked)}."
            )
        withheld = sorted(names & set(disclosure.withheld))
        if withheld:
            raise Forbidden(
                f"The organization's compliance settings withhold the field(s) "
                f"{', '.join(withheld)} on the {self.channel.value} channel; they cannot be set "
                f"or filtered on here."
            )

    @staticmethod
    def stamp(record: Any, disclosure: FieldDisclosure) -> None:
        """Mark `record` with a disclosure already decided for a whole export or payload
        (whose one audit event, not a reveal per record, says which fields left)."""
        record.__dict__[_DISCLOSED] = disclosure

    async def show(self, view: View, *shown: Shown) -> None:
        """Decide every field of every record one response shows, and audit in one event the
        stored sensitive values it reveals."""
        revealed_ids: list[uuid.UUID] = []
        revealed_fields: set[str] = set()
        for item in shown:
            disclosure, sensitive = await self._revealable(item.repository.storage)
            for record in item.records:
                record.__dict__[_DISCLOSED] = disclosure
                if record.erased:
                    continue
                self.disclosed(getattr(record, "subject_id", None))
                names = [
                    name
                    for name in sensitive
                    if name not in item.sent and getattr(record, name) is not None
                ]
                if names:
                    revealed_ids.append(record.id)
                    revealed_fields.update(names)
        if revealed_ids:
            self._audit_reveal(view, shown[0].repository.module, revealed_ids, revealed_fields)

    def disclosed(self, *subject_ids: uuid.UUID | None) -> None:
        """The response carries these data subjects' data (a recipient to tell, when the
        caller is a partner client)."""
        note_partner_disclosure(self.session, self.principal, subject_ids)

    async def show_history(
        self,
        repository: RecordRepository[Any],
        record_id: uuid.UUID,
        items: Sequence[HistoryItem],
        *,
        subject_id: uuid.UUID | None = None,
    ) -> FieldDisclosure:
        """Mask and withhold the old and new values of a page of a record's history (of the
        data subject `subject_id`, for a lead or contact); audit the stored sensitive values
        it reveals. Field names stay: they are no values."""
        if items:
            self.disclosed(subject_id)
        disclosure, sensitive = await self._revealable(repository.storage)
        revealed: set[str] = set()
        for item in items:
            if item.changes is None:
                continue
            for name in disclosure.withheld:
                item.changes.pop(name, None)
            for name in disclosure.masked:
                if name in item.changes:
                    item.changes[name] = (None, None)
            revealed.update(
                name
                for name in sensitive
                if name in item.changes and item.changes[name] != (None, None)
            )
        if revealed:
            self._audit_reveal(View.HISTORY, repository.module, [record_id], revealed)
        return disclosure

    async def sensitive_shown(self, storage: RecordStorage) -> tuple[FieldDisclosure, list[str]]:
        """For values opened before the policy decided (a stored DSR package): the module's
        disclosure, and its sensitive fields the caller sees; what is then shown of them is
        audited with :meth:`audit_reveal`."""
        return await self._revealable(storage)

    def audit_reveal(
        self, view: View, module: Module, ids: list[uuid.UUID], fields: set[str]
    ) -> None:
        """The one reveal event of a response that showed stored sensitive values of `ids`
        (see :meth:`sensitive_shown`); `show` and `show_history` write theirs themselves."""
        if ids:
            self._audit_reveal(view, module, ids, fields)

    def _audit_reveal(
        self, view: View, module: Module, ids: list[uuid.UUID], fields: set[str]
    ) -> None:
        audit(
            self.session,
            self.principal,
            AuditAction.RECORD_SENSITIVE_REVEALED,
            target_type=module.noun,
            target_id=ids[0] if len(ids) == 1 else None,
            target_ids=ids,
            fields=fields,
            reason=view.value,
        )
