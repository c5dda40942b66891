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

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from crm_service.errors import PROBLEM_MEDIA_TYPE, Problem, problem_response_doc
from crm_service.kit.openapi import HEADERS, headers

BEARER_SCHEME = "HTTPBearer"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The canonical text of these formats is at most this long (a UUID with hyphens, RFC 3339 with
# microseconds and an offset, a calendar date).
FORMAT_MAX_LENGTH = {"uuid": 36, "date-time": 32, "date": 10}
# FastAPI's own 422 body, replaced everywhere by the problem document.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI, *, public_paths: frozenset[str]) -> None:
    """Make `app.openapi()` answer the published document (built once, then cached)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _declare_shared(generate(), public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_shared(spec: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    components["headers"] = HEADERS
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
                _declare_operation(item[method], public=path in public_paths)
    _bound_formatted_text(spec)
    return spec


def _declare_operation(operation: dict[str, Any], *, public: bool) -> None:
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
        for status in (401, 403):
            responses.setdefault(str(status), problem_response_doc(status))
    if has_body:
        for status in (400, 413):
            responses.setdefault(str(status), problem_response_doc(status))
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
        response.setdefault("headers", {}).update(headers(*names)["headers"])
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
