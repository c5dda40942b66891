"""The committed OpenAPI document is what the app serves, and it reads well for generated
clients: unique operation ids, summaries, typed bodies and documented errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from crm_service.config import Settings
from crm_service.main import create_app
from crm_service.security.principal import PUBLIC_PATHS

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def _spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_committed_spec_matches_the_app() -> None:
    committed = json.loads(SPEC_PATH.read_text())
    assert committed == _spec(), "openapi/openapi.json drifted: run `make openapi` and commit it"


def test_every_operation_is_named_summarised_and_documents_its_errors() -> None:
    spec = _spec()
    ids = [operation["operationId"] for _, _, operation in _operations(spec)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, method, operation in _operations(spec):
        assert operation["operationId"][0].islower() and "_" not in operation["operationId"], (
            f"{method.upper()} {path}: operationId should be camelCase"
        )
        assert operation.get("summary"), f"{method.upper()} {path} has no summary"
        responses = operation["responses"]
        if path not in PUBLIC_PATHS:
            problem = responses["401"]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}, f"{path} lacks 401"
        if "requestBody" in operation or "parameters" in operation:
            assert "422" in responses, f"{method.upper()} {path} does not document 422"


def test_list_responses_are_typed() -> None:
    spec = _spec()
    for module, schema in (
        ("contacts", "ContactList"),
        ("leads", "LeadList"),
        ("accounts", "AccountList"),
    ):
        ok = spec["paths"][f"/v1/{module}"]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{schema}"
        }
        assert spec["paths"][f"/v1/{module}"]["get"]["operationId"] == f"list{module.capitalize()}"


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = spec["components"][section][name]
    return node


def _schema_nodes(spec: dict[str, Any], node: Any, seen: set[str]) -> Any:
    """Every schema object reachable from `node`, following $refs once each."""
    if isinstance(node, dict):
        if "$ref" in node:
            if node["$ref"] in seen:
                return
            seen.add(node["$ref"])
            node = _resolve(spec, node)
        yield node
        for key, value in node.items():
            if key not in {"enum", "const", "default", "examples"}:
                yield from _schema_nodes(spec, value, seen)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_nodes(spec, value, seen)


def _input_schemas(spec: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    roots = [parameter["schema"] for parameter in operation.get("parameters", [])]
    for media in operation.get("requestBody", {}).get("content", {}).values():
        roots.append(media["schema"])
    seen: set[str] = set()
    return [node for root in roots for node in _schema_nodes(spec, root, seen)]


def test_every_input_is_bounded_and_text_refuses_control_characters() -> None:
    """What generators and fuzzers need to produce only valid input, and what the service
    enforces: lengths, counts and ranges on everything, a pattern on free text."""
    spec = _spec()
    for path, method, operation in _operations(spec):
        label = f"{method.upper()} {path}"
        for node in _input_schemas(spec, operation):
            kind = node.get("type")
            if kind == "string" and "enum" not in node and "const" not in node:
                assert "maxLength" in node, f"{label}: unbounded string {node}"
                if node.get("format") not in {"uuid", "date", "date-time", "email"}:
                    assert re.match(node["pattern"], "a\x00b") is None, f"{label}: {node}"
                    assert re.match(node["pattern"], "a\x1bb") is None, f"{label}: {node}"
            if kind == "array":
                assert "maxItems" in node, f"{label}: unbounded array"
            if kind == "object" and "additionalProperties" in node and node["additionalProperties"]:
                assert "maxProperties" in node, f"{label}: unbounded map"
            if kind == "integer":
                assert {"minimum", "maximum", "format"} <= set(node), f"{label}: {node}"
        for media in operation.get("requestBody", {}).get("content", {}).values():
            body = _resolve(spec, media["schema"])
            assert body.get("additionalProperties") is False, f"{label}: unknown fields allowed"


def test_parameters_never_claim_null() -> None:
    """A query string, path or header has no null: optional parameters are left out."""
    spec = _spec()
    for path, method, operation in _operations(spec):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            assert {"type": "null"} not in schema.get("anyOf", []), (
                f"{method.upper()} {path}: {parameter['name']}"
            )


def test_document_declares_servers_contact_security_and_tags() -> None:
    spec = _spec()
    assert spec["servers"] and spec["info"]["contact"]
    assert spec["security"] == [{"HTTPBearer": []}]
    declared_tags = {tag["name"] for tag in spec["tags"]}
    for path, method, operation in _operations(spec):
        label = f"{method.upper()} {path}"
        assert operation.get("description"), f"{label} has no description"
        assert operation["tags"] and set(operation["tags"]) <= declared_tags, label
        if path in PUBLIC_PATHS:
            assert operation["security"] == [{}], label
        else:
            # A person's bearer token, and for what partners may call, the OAuth scopes.
            assert operation["security"][0] == {"HTTPBearer": []}, label
            assert len(operation["security"]) in (1, 2), label


def test_every_outcome_and_header_the_middleware_adds_is_declared() -> None:
    spec = _spec()
    for path, method, operation in _operations(spec):
        label = f"{method.upper()} {path}"
        responses = operation["responses"]
        assert "500" in responses, label
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), label
        if path not in PUBLIC_PATHS:
            assert {"401", "403"} <= set(responses), label
        for status, response in responses.items():
            headers = set(response.get("headers", {}))
            assert "X-Request-ID" in headers, f"{label} {status}"
            if status == "401":
                assert "WWW-Authenticate" in headers, f"{label} {status}"
            if status == "201":
                assert "Location" in headers, f"{label} {status}"
            # OAuth clients read RFC 6749 §5.2 errors as application/json.
            oauth_error = path.startswith("/oauth/") and status in ("400", "401", "429")
            if status[0] in "45" and path != "/readyz" and not oauth_error:
                media_types = list(response["content"])
                assert media_types == ["application/problem+json"], f"{label} {status}"
    for module in ("leads", "contacts", "accounts"):
        record = spec["paths"][f"/v1/{module}/{{record_id}}"]
        for method in ("get", "patch"):
            assert "ETag" in record[method]["responses"]["200"]["headers"]
        assert "ETag" in spec["paths"][f"/v1/{module}"]["post"]["responses"]["201"]["headers"]
