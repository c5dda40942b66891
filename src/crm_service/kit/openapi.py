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
    "RateLimit-Policy": {
        "description": "The caller's rate-limit policies (IETF httpapi RateLimit header fields, "
        'draft -12, a structured-field list), e.g. `"burst";q=100;w=10, "daily";q=25000;'
        'w=86400, "concurrency";q=10;qu="concurrent-requests"`. On every response to an '
        "identified caller (a partner client, or a signed-in session's burst).",
        "required": False,
        "schema": {"type": "string", "maxLength": 300, "pattern": '^"[a-z]+";q=[0-9]+'},
    },
    "RateLimit": {
        "description": 'What is left of each policy and the seconds until it resets: `"burst";'
        'r=42;t=7, "daily";r=24000;t=3600, "concurrency";r=9`.',
        "required": False,
        "schema": {"type": "string", "maxLength": 300, "pattern": '^"[a-z]+";r=[0-9]+'},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (for a rate limit: the longest `t` "
        "of the violated policies).",
        "required": True,
        "schema": {"type": "string", "maxLength": 10, "pattern": "^[0-9]+$"},
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
