"""The response headers the service sends, declared once for the OpenAPI document.

Routes reference them (`headers("ETag")` in a route's `responses=`); the document builder
(`crm_service.openapi`) adds the ones every response or every status carries.
"""

from __future__ import annotations

from typing import Any

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "Identifies this request in the service's logs; the caller's own "
        "`X-Request-ID` is echoed when it is 1 to 64 letters, digits, `.`, `_` or `-`.",
        "required": True,
        "schema": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    },
    "WWW-Authenticate": {
        "description": 'The Bearer challenge (RFC 6750), with `error="invalid_token"` when '
        "a token was sent but is not valid.",
        "required": True,
        "schema": {"type": "string", "maxLength": 200, "pattern": '^Bearer realm="crm-service"'},
    },
    "Location": {
        "description": "The path of the resource this request created.",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference", "maxLength": 200},
    },
    "ETag": {
        "description": "The version read or written; send it as `If-Match` to change only "
        "this version.",
        "required": True,
        "schema": {"type": "string", "maxLength": 24, "pattern": '^"[0-9]+"$'},
    },
    "Allow": {
        "description": "The methods the path supports.",
        "required": True,
        "schema": {
            "type": "string",
            "maxLength": 100,
            "pattern": "^[A-Z]+(, ?[A-Z]+)*$",
        },
    },
    "Withheld-Fields": {
        "description": "Fields left out of this export because the organization's compliance "
        "settings withhold their classification on the export channel (comma-separated "
        "names; empty when none).",
        "required": True,
        "schema": {"type": "string", "maxLength": 2000, "pattern": "^[a-z0-9_,]*$"},
    },
    "Masked-Fields": {
        "description": "Sensitive fields exported empty because your profile may not see "
        "them (comma-separated names; empty when none).",
        "required": True,
        "schema": {"type": "string", "maxLength": 2000, "pattern": "^[a-z0-9_,]*$"},
    },
    "Content-Disposition": {
        "description": "The file name to save the export as.",
        "required": True,
        "schema": {"type": "string", "maxLength": 100},
    },
}


def headers(*names: str) -> dict[str, Any]:
    """A response's `headers` naming components of :data:`HEADERS`."""
    return {"headers": {name: {"$ref": f"#/components/headers/{name}"} for name in names}}
