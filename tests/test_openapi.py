"""The committed OpenAPI document is what the app serves, and it reads well for generated
clients: unique operation ids, summaries, typed bodies and documented errors."""

from __future__ import annotations

import json
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
    for module, schema in (("contacts", "ContactList"), ("leads", "LeadList"), ("accounts", "AccountList")):
        ok = spec["paths"][f"/v1/{module}"]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        assert spec["paths"][f"/v1/{module}"]["get"]["operationId"] == f"list{module.capitalize()}"
