"""Every input the API takes is clean text and strictly typed, on both databases.

The route walks read the app's own OpenAPI document, so an operation added later is covered
without touching this file: every free-text field of every request body and query refuses
control characters (and, in single-line fields, tabs and line breaks) with a 422 naming the
field, never a 500; every flag refuses "yes", 1 and "true"; every JSON integer refuses "5".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from crm_service.kit.schemas import MULTI_LINE_PATTERN
from tests.conftest import Org, assert_problem, count_rows

REFUSED_EVERYWHERE = {
    "nul": "\x00",
    "escape": "\x1b",
    "c1-control": "\x85",
    "lone-surrogate": "\ud800",
}
REFUSED_IN_ONE_LINE = {"line-feed": "\n", "carriage-return": "\r", "tab": "\t"}
# pydantic itself refuses a lone surrogate (string_unicode) before any rule of ours runs;
# fields with a stricter pattern of their own (phones, URLs, IP networks) answer its rule.
TEXT_RULES = {"control_character", "string_pattern_mismatch", "string_unicode", "ip_network"}
FREE_TEXT_FORMATS = {None, "email"}


def _spec(org: Org) -> dict[str, Any]:
    spec: dict[str, Any] = org.app.openapi()
    return spec


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _not_null(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of `X | None`, resolved."""
    schema = _resolve(spec, schema)
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return _resolve(spec, branches[0]) if len(branches) == 1 else schema


def _leaves(
    spec: dict[str, Any], schema: dict[str, Any], location: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, schema) of each scalar a body can carry: nested objects and array items
    included (an item's location ends in `.0`)."""
    schema = _not_null(spec, schema)
    if schema.get("type") == "object" and "properties" in schema:
        for name, child in schema["properties"].items():
            yield from _leaves(spec, child, f"{location}.{name}")
    elif schema.get("type") == "array":
        yield from _leaves(spec, schema["items"], f"{location}.0")
    else:
        yield location, schema


def _is_free_text(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "string"
        and schema.get("format") in FREE_TEXT_FORMATS
        and "enum" not in schema
        and "const" not in schema
    )


def _one_line(schema: dict[str, Any]) -> bool:
    return schema.get("pattern") != MULTI_LINE_PATTERN


def _text_value(schema: dict[str, Any], bad: str) -> str:
    value = "Ab" + bad + "cd"
    return value.ljust(schema.get("minLength", 0), "e")


def _place(body: dict[str, Any], location: str, value: Any) -> None:
    """Set `body.a.b.0` style locations, building the objects and lists on the way."""
    parts = location.split(".")[1:]
    node: Any = body
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        if following is None:
            if isinstance(node, list):
                node.append(value)
            else:
                node[part] = value
            return
        child: Any = [] if following == "0" else {}
        if isinstance(node, list):
            node.append(child)
        else:
            child = node.setdefault(part, child)
        node = child


def _concrete(path: str, spec: dict[str, Any], operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        schema = _resolve(spec, parameter["schema"])
        value = schema["enum"][0] if "enum" in schema else str(uuid.uuid4())
        path = path.replace("{" + parameter["name"] + "}", value)
    return path


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path, operation


def _body_leaves(
    spec: dict[str, Any], operation: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return []
    return list(_leaves(spec, content["application/json"]["schema"], "body"))


async def _send(org: Org, method: str, path: str, body: dict[str, Any]) -> Any:
    # json.dumps escapes a lone surrogate as \ud800, which is valid JSON text.
    return await org.client.request(
        method,
        path,
        content=json.dumps(body).encode(),
        headers={**org.headers, "Content-Type": "application/json"},
    )


def _rules_by_field(response: Any) -> dict[str, set[str]]:
    body = assert_problem(response, 422)
    found: dict[str, set[str]] = {}
    for error in body["errors"]:
        found.setdefault(error["field"], set()).add(error["rule"])
    return found


async def test_every_free_text_body_field_refuses_control_characters(org: Org) -> None:
    spec = _spec(org)
    audit_before = await count_rows(org.app, "audit_events", org.id)
    checked = 0
    for method, path, operation in _operations(spec):
        texts = [(loc, s) for loc, s in _body_leaves(spec, operation) if _is_free_text(s)]
        if not texts:
            continue
        url = _concrete(path, spec, operation)
        cases = [(name, bad, texts) for name, bad in REFUSED_EVERYWHERE.items()] + [
            (name, bad, [(loc, s) for loc, s in texts if _one_line(s)])
            for name, bad in REFUSED_IN_ONE_LINE.items()
        ]
        for name, bad, fields in cases:
            if not fields:
                continue
            body: dict[str, Any] = {}
            for location, schema in fields:
                _place(body, location, _text_value(schema, bad))

            response = await _send(org, method.upper(), url, body)

            label = f"{method.upper()} {path} with {name}"
            assert response.status_code == 422, f"{label}: {response.status_code} {response.text}"
            rules = _rules_by_field(response)
            for location, _ in fields:
                assert rules.get(location, set()) & TEXT_RULES, f"{label}: {location} not refused"
            assert "Ab" + bad not in response.text
            checked += len(fields)
    assert checked > 100, "the walk found too few text fields: is the spec read right?"
    assert await count_rows(org.app, "audit_events", org.id) == audit_before


async def test_every_free_text_query_parameter_refuses_control_characters(org: Org) -> None:
    spec = _spec(org)
    checked = 0
    for method, path, operation in _operations(spec):
        texts = {
            parameter["name"]: _not_null(spec, parameter["schema"])
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "query" and _is_free_text(_not_null(spec, parameter["schema"]))
        }
        if not texts:
            continue
        url = _concrete(path, spec, operation)
        # A lone surrogate cannot be written in a URL; the other characters can.
        for name, bad in {**REFUSED_EVERYWHERE, **REFUSED_IN_ONE_LINE}.items():
            if name == "lone-surrogate":
                continue
            params = {key: _text_value(schema, bad) for key, schema in texts.items()}

            response = await org.client.request(
                method.upper(), url, params=params, headers=org.headers
            )

            label = f"{method.upper()} {path} with {name}"
            assert response.status_code == 422, f"{label}: {response.status_code} {response.text}"
            rules = _rules_by_field(response)
            for key in texts:
                assert rules.get(f"query.{key}", set()) & TEXT_RULES, f"{label}: {key} not refused"
            checked += len(texts)
    assert checked > 20


async def test_multi_line_fields_keep_their_lines_and_names_stay_one_line(org: Org) -> None:
    text = "First line\n\tindented\r\nlast line"
    created = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lines", "description": text},
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    fetched = await org.client.get(f"/v1/contacts/{created.json()['id']}", headers=org.headers)
    assert fetched.json()["description"] == text

    refused = await org.client.post(
        "/v1/contacts", json={"last_name": "Two\nLines"}, headers=org.headers
    )
    assert _rules_by_field(refused) == {"body.last_name": {"control_character"}}
    assert await count_rows(org.app, "contacts", org.id) == 1


async def test_a_field_name_with_a_nul_is_refused_not_a_server_error(org: Org) -> None:
    response = await _send(
        org, "PUT", "/v1/settings/fields/contacts", {"fields": {"ema\x00il": "personal"}}
    )

    assert_problem(response, 422)


NOT_A_FLAG = {"yes": "yes", "one": 1, "string-true": "true"}
# 5.0 is the integer 5 to JSON Schema, and is taken; these are not integers.
NOT_AN_INTEGER = {"digits": "5", "fraction": 5.5, "flag": True}


async def test_every_flag_and_integer_in_a_body_is_strict(org: Org) -> None:
    spec = _spec(org)
    audit_before = await count_rows(org.app, "audit_events", org.id)
    flags_checked: set[str] = set()
    for method, path, operation in _operations(spec):
        leaves = _body_leaves(spec, operation)
        url = _concrete(path, spec, operation)
        for expected_rule, kind, values in (
            ("bool_type", "boolean", NOT_A_FLAG),
            ("int_type", "integer", NOT_AN_INTEGER),
        ):
            fields = [location for location, schema in leaves if schema.get("type") == kind]
            for name, value in values.items() if fields else ():
                body: dict[str, Any] = {}
                for location in fields:
                    _place(body, location, value)

                response = await _send(org, method.upper(), url, body)

                label = f"{method.upper()} {path} with {kind} {name}"
                assert response.status_code == 422, f"{label}: {response.text}"
                rules = _rules_by_field(response)
                for location in fields:
                    assert expected_rule in rules.get(location, set()), f"{label}: {location}"
            if kind == "boolean":
                flags_checked.update(location.rsplit(".", 1)[1] for location in fields)
    security_flags = {
        "view_sensitive",
        "mfa_required",
        "confirm_self_lockout",
        "is_admin",
        "is_active",
        "enabled",
        "allow_jit",
        "require_sso",
    }
    assert security_flags <= flags_checked
    assert await count_rows(org.app, "audit_events", org.id) == audit_before


async def _profile_id(org: Org) -> str:
    created = await org.client.post("/v1/profiles", json={"name": "Readers"}, headers=org.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _user_id(org: Org) -> str:
    await org.add_user()
    users = await org.client.get("/v1/users", headers=org.headers)
    return str(next(u["id"] for u in users.json()["data"] if u["id"] != str(org.admin_id)))


async def _lead_id(org: Org) -> str:
    created = await org.client.post(
        "/v1/leads", json={"last_name": "Lead", "company": "Co"}, headers=org.headers
    )
    return str(created.json()["id"])


async def _nothing(org: Org) -> str:
    return ""


# (name, what to create first, method, path, body with one lax security value, what to read)
SECURITY_FLAG_CASES: list[tuple[str, Any, str, str, dict[str, Any], str]] = [
    (
        "mfa_required",
        _nothing,
        "PUT",
        "/v1/settings/security",
        {"mfa_required": "{v}"},
        "/v1/settings/security",
    ),
    (
        "enabled",
        _nothing,
        "PUT",
        "/v1/settings/ip-allowlist",
        {"enabled": "{v}", "cidrs": ["203.0.113.0/24"]},
        "/v1/settings/ip-allowlist",
    ),
    (
        "confirm_self_lockout",
        _nothing,
        "PUT",
        "/v1/settings/ip-allowlist",
        {"enabled": True, "cidrs": ["203.0.113.0/24"], "confirm_self_lockout": "{v}"},
        "/v1/settings/ip-allowlist",
    ),
    (
        "view_sensitive-create",
        _nothing,
        "POST",
        "/v1/profiles",
        {"name": "Lax", "view_sensitive": "{v}"},
        "/v1/profiles",
    ),
    (
        "view_sensitive-update",
        _profile_id,
        "PATCH",
        "/v1/profiles/{id}",
        {"view_sensitive": "{v}"},
        "/v1/profiles/{id}",
    ),
    ("rights", _profile_id, "PATCH", "/v1/profiles/{id}", {"rights": "{v}"}, "/v1/profiles/{id}"),
    (
        "is_admin-create",
        _nothing,
        "POST",
        "/v1/users",
        {"email": "lax@example.com", "is_admin": "{v}"},
        "/v1/users",
    ),
    ("is_admin-update", _user_id, "PATCH", "/v1/users/{id}", {"is_admin": "{v}"}, "/v1/users/{id}"),
    ("is_active", _user_id, "PATCH", "/v1/users/{id}", {"is_active": "{v}"}, "/v1/users/{id}"),
    (
        "create_account",
        _lead_id,
        "POST",
        "/v1/leads/{id}/convert",
        {"create_account": "{v}"},
        "/v1/leads/{id}",
    ),
]


def _with(body: dict[str, Any], value: Any) -> dict[str, Any]:
    return {key: value if item == "{v}" else item for key, item in body.items()}


@pytest.mark.parametrize("value", list(NOT_A_FLAG.values()), ids=list(NOT_A_FLAG))
@pytest.mark.parametrize(
    ("setup", "method", "path", "body", "read"),
    [case[1:] for case in SECURITY_FLAG_CASES],
    ids=[case[0] for case in SECURITY_FLAG_CASES],
)
async def test_security_flag_given_as_text_or_number_changes_nothing(
    org: Org, setup: Any, method: str, path: str, body: dict[str, Any], read: str, value: Any
) -> None:
    record_id = await setup(org)
    before = await org.client.get(read.format(id=record_id), headers=org.headers)
    assert before.status_code == 200, before.text
    audit_before = await count_rows(org.app, "audit_events", org.id)

    response = await org.client.request(
        method, path.format(id=record_id), json=_with(body, value), headers=org.headers
    )

    flag = next(key for key, item in body.items() if item == "{v}")
    rules = _rules_by_field(response)
    assert rules.get(f"body.{flag}"), rules
    after = await org.client.get(read.format(id=record_id), headers=org.headers)
    assert after.json() == before.json()
    assert await count_rows(org.app, "audit_events", org.id) == audit_before


@pytest.mark.parametrize(
    ("limit", "rule"),
    [
        ("5.0", "int_parsing"),
        ("true", "int_parsing"),
        ("1e1", "int_parsing"),
        ("0", "greater_than_equal"),
    ],
)
async def test_query_numbers_are_decimal_digits(org: Org, limit: str, rule: str) -> None:
    response = await org.client.get("/v1/contacts", params={"limit": limit}, headers=org.headers)

    assert _rules_by_field(response) == {"query.limit": {rule}}


async def test_query_numbers_in_digits_still_work(org: Org) -> None:
    for _ in range(3):
        await org.client.post("/v1/accounts", json={"name": "Co"}, headers=org.headers)

    page = await org.client.get("/v1/accounts", params={"limit": "2"}, headers=org.headers)
    searched = await org.client.post("/v1/accounts/search", json={"limit": 2}, headers=org.headers)

    assert page.status_code == 200 and len(page.json()["data"]) == 2
    assert searched.status_code == 200 and len(searched.json()["data"]) == 2


@pytest.mark.parametrize(
    "value", ["0.5", "1700000000", "2026-11-23"], ids=["float", "epoch", "date-only"]
)
async def test_query_times_are_rfc3339(org: Org, value: str) -> None:
    response = await org.client.get(
        "/v1/audit-events", params={"until": value}, headers=org.headers
    )

    assert _rules_by_field(response) == {"query.until": {"datetime_parsing"}}


async def test_a_date_in_json_is_text(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts", json={"last_name": "Dated", "date_of_birth": 0}, headers=org.headers
    )

    assert _rules_by_field(response) == {"body.date_of_birth": {"date_type"}}
    assert await count_rows(org.app, "contacts", org.id) == 0
