"""The OpenAPI document as published: what the routes declare, plus what every route shares.

Routes declare their own outcomes (404, 409, 412, an `ETag`). The middleware and the shared
dependencies answer on every route, so their outcomes are declared here, once:

- every response carries `X-Request-ID` (log.RequestContextMiddleware), and any operation
  can fail with a problem+json 500 (the same middleware's last resort);
- a body that cannot be decoded is a 400, one over the size limit a 413
  (security.body_limit), one that does not match the schema a 422;
- every operation off the public list needs a bearer token (401 with `WWW-Authenticate`)
  and can meet an IP allowlist or a missing scope (403);
- every 201 says where the new resource is (`Location`).

Error responses have one media type, application/problem+json. Ids and times are bounded
at the length of their canonical text (pydantic's schemas leave that out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm_service.errors import PROBLEM_MEDIA_TYPE, Problem, problem_response_doc
from crm_service.kit.openapi import HEADERS, headers
from crm_service.security.principal import require_user
from crm_service.security.scopes import Scope

BEARER_SCHEME = "HTTPBearer"
# Partner clients: OAuth 2.0 client credentials, with the scopes each operation needs.
PARTNER_SCHEME = "PartnerOAuth"
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")
QUOTA_EXCEEDED_SCHEMA = {
    "title": "QuotaExceeded",
    "description": "429: the draft's quota-exceeded problem, naming the policies exhausted.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "maxLength": 200},
        "title": {"type": "string", "maxLength": 100},
        "status": {"type": "integer", "format": "int32", "minimum": 429, "maximum": 429},
        "detail": {"type": "string", "maxLength": 500},
        "instance": {"type": "string", "maxLength": 2048},
        "violated-policies": {
            "type": "array",
            "maxItems": 3,
            "items": {"type": "string", "maxLength": 16},
        },
    },
    "required": ["type", "title", "status", "violated-policies"],
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The canonical text of these formats is at most this long (a UUID with hyphens, RFC 3339 with
# microseconds and an offset, a calendar date).
FORMAT_MAX_LENGTH = {"uuid": 36, "date-time": 32, "date": 10}
# FastAPI's own 422 body, replaced everywhere by the problem document.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(
    app: FastAPI, *, public_paths: frozenset[str], routers: Sequence[APIRouter] = ()
) -> None:
    """Make `app.openapi()` answer the published document (built once, then cached)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _declare_shared(generate(), public_paths, _partner_scopes(routers))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _scopes_needed(dependant: Dependant) -> list[str] | None:
    """The scopes a route's dependencies demand of a partner token; None when only a person
    may call it (their own account, or an administration right)."""
    scopes: set[str] = set()
    for dependency in dependant.dependencies:
        if dependency.call is require_user:
            return None
        required = getattr(dependency.call, "required_scopes", None)
        if required is not None:
            if Scope.ADMIN in required:
                return None
            scopes |= {scope.value for scope in required}
        nested = _scopes_needed(dependency)
        if nested is None:
            return None
        scopes |= set(nested)
    return sorted(scopes)


def _partner_scopes(routers: Sequence[APIRouter]) -> dict[tuple[str, str], list[str] | None]:
    return {
        (route.path, method.lower()): _scopes_needed(route.dependant)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


def _scope_description(scope: Scope) -> str:
    parts = scope.value.split(".")
    if len(parts) == 3:
        return f"{parts[2].capitalize()} {parts[1]}"
    return {"crm.export": "Export records", "crm.admin": "Administration (people only)"}.get(
        scope.value, scope.value
    )


def _declare_shared(
    spec: dict[str, Any],
    public_paths: frozenset[str],
    partner_scopes: dict[tuple[str, str], list[str] | None] | None = None,
) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas["QuotaExceeded"] = QUOTA_EXCEEDED_SCHEMA
    components["headers"] = HEADERS
    components.setdefault("securitySchemes", {})[PARTNER_SCHEME] = {
        "type": "oauth2",
        "description": "Partner systems: OAuth 2.0 client credentials (RFC 6749 §4.4) at "
        "`/oauth/token`, client authentication `client_secret_basic` or `private_key_jwt`. "
        "Access tokens are opaque and expire; client assertions (JWTs) are checked as RFC8725 "
        "asks: asymmetric algorithms only, audience, expiry and a single-use jti.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": "/oauth/token",
                "scopes": {
                    scope.value: _scope_description(scope)
                    for scope in Scope
                    if scope is not Scope.ADMIN
                },
            }
        },
    }
    components["responses"] = {
        "MethodNotAllowed": {
            **problem_response_doc(405),
            **headers("Allow", "X-Request-ID"),
        }
    }
    # Deny by default: the document says so globally, and each public operation opts out
    # with the empty requirement `{}` ("no credentials"), which linters read as deliberate.
    spec["security"] = [{BEARER_SCHEME: []}]
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                _declare_operation(
                    item[method],
                    public=path in public_paths,
                    scopes=(partner_scopes or {}).get((path, method)),
                )
    _bound_formatted_text(spec)
    return spec


def _declare_operation(
    operation: dict[str, Any], *, public: bool, scopes: list[str] | None = None
) -> None:
    for parameter in operation.get("parameters", []):
        # A query string, path or header cannot carry JSON null: an optional parameter is
        # one left out, so its schema is the value's alone.
        parameter["schema"] = _without_null(parameter["schema"])
    responses: dict[str, Any] = operation.setdefault("responses", {})
    has_body = "requestBody" in operation
    if public:
        operation["security"] = [{}]
    else:
        operation["security"] = [{BEARER_SCHEME: []}]
        if scopes is not None:
            operation["security"].append({PARTNER_SCHEME: scopes})
        for code in (401, 403):
            responses.setdefault(str(code), problem_response_doc(code))
        # Every authenticated request counts against its caller's rate limits.
        responses["429"] = {
            "description": "A rate limit is exhausted (`violated-policies`); retry after "
            "`Retry-After` seconds",
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/QuotaExceeded"}}
            },
        }
    if has_body:
        for code in (400, 413):
            responses.setdefault(str(code), problem_response_doc(code))
    if has_body or operation.get("parameters"):
        responses["422"] = problem_response_doc(422)
    responses.setdefault("500", problem_response_doc(500))
    for status, response in responses.items():
        if status.startswith(("4", "5")) and PROBLEM_MEDIA_TYPE in response.get("content", {}):
            response["content"] = {PROBLEM_MEDIA_TYPE: response["content"][PROBLEM_MEDIA_TYPE]}
        names = ["X-Request-ID"]
        if status == "401":
            names.append("WWW-Authenticate")
        if status == "201":
            names.append("Location")
        if status == "429":
            names.append("Retry-After")
        if not public and status.startswith(("2", "4")):
            names += RATE_LIMIT_HEADERS
        declared = response.setdefault("headers", {})
        for name, reference in headers(*names)["headers"].items():
            # A route's own declaration wins (the OAuth endpoints' Basic challenge).
            declared.setdefault(name, reference)
    operation["responses"] = dict(sorted(responses.items()))


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if len(branches) != 1 or len(branches) == len(schema.get("anyOf", [])):
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**branches[0], **rest}


def _bound_formatted_text(node: Any) -> None:
    if isinstance(node, dict):
        limit = FORMAT_MAX_LENGTH.get(node.get("format", ""))
        if node.get("type") == "string" and limit is not None:
            node.setdefault("maxLength", limit)
        for value in node.values():
            _bound_formatted_text(value)
    elif isinstance(node, list):
        for value in node:
            _bound_formatted_text(value)
