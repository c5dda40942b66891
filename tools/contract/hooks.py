"""Schemathesis hooks for the contract gate.

A schema says which requests are well formed, not which ids exist, which cursors this
service issued or which version a record is at. A schema-valid request refused only because
its values name nothing here (422 whose every error is `not_found`, `invalid_cursor` or
`unknown_field`; 412 for an `If-Match` naming another version; 400 from the single sign-on
callback for a `state` that names no sign-in attempt; 410 for a lead or contact whose data
subject the fuzzer erased) therefore counts as accepted.
Nor does a schema say which numbers make a public key: a JWK of the declared shape and
lengths whose point lies off its curve, or whose RSA exponent is 0, is refused as 422 `jwk`
after the service tried to import it, and counts as accepted too. Nor does a schema say
what jinja2 an organization's mail template may hold: text naming a variable its kind of
mail lacks, or a construct the template sandbox refuses, is 422 (`undefined_variable`,
`template_syntax`, `not_allowed`, `render_failed`) and counts as accepted. Any other
refusal of schema-valid data still fails the gate.

Email addresses are generated as the spec describes them: able to receive mail, so never
under a special-use domain.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

NAMES_NOTHING = {"not_found", "invalid_cursor", "unknown_field"}
# A public key of the declared shape that is no key (oauth clients' `jwks`).
NOT_A_KEY = {"jwk"}
# Template text the sandbox of an organization's mail templates refuses (mail/sandbox.py).
NOT_THIS_TEMPLATE = {"undefined_variable", "template_syntax", "not_allowed", "render_failed"}


def _can_receive_mail(address: str) -> bool:
    return address.rsplit(".", 1)[-1].lower() not in SPECIAL_USE_DOMAIN_NAMES


schemathesis.openapi.format("email", st.emails().filter(_can_receive_mail))


SSO_CALLBACK = "GET /v1/auth/sso/callback"


def _names_nothing(response: Any, case: Any) -> bool:
    if response.status_code in (410, 412):
        return True
    if response.status_code == 400 and case.operation.label == SSO_CALLBACK:
        return True
    if response.status_code != 422:
        return False
    try:
        errors = json.loads(response.content).get("errors") or []
    except ValueError:
        return False
    return bool(errors) and all(
        error.get("rule") in NAMES_NOTHING | NOT_A_KEY | NOT_THIS_TEMPLATE for error in errors
    )


@schemathesis.check
def positive_data_acceptance_up_to_references(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schema-valid data is accepted, unless it only names things this service lacks."""
    if _names_nothing(response, case):
        return None
    return positive_data_acceptance(ctx, response, case)
