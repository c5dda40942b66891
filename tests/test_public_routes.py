"""Deny by default (rule 7): every route needs a principal unless it is on the public list.

Two independent checks: the dependency tree of each route, and an unauthenticated request
to each route (with each of its methods, and HEAD beside GET), which must answer 401 with
`WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm_service.main import ROUTERS
from crm_service.security.principal import PUBLIC_PATHS, authenticate


def _needs_principal(dependant: Dependant) -> bool:
    # `authenticate` itself, or a dependency marked as calling it (security.principal).
    return any(
        dep.call is authenticate
        or getattr(dep.call, "authenticates", False)
        or _needs_principal(dep)
        for dep in dependant.dependencies
    )


def _api_routes(app: Any) -> list[APIRoute]:
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    # Nothing the app serves may escape the walk.
    assert set(app.openapi()["paths"]) == {route.path for route in routes}
    return routes


def test_public_list_is_exactly_what_is_public(app: Any) -> None:
    unauthenticated = {
        route.path for route in _api_routes(app) if not _needs_principal(route.dependant)
    }
    assert unauthenticated - PUBLIC_PATHS == set(), "routes without a principal"
    assert {"/healthz", "/readyz", "/metrics", "/v1/auth/login"} <= unauthenticated


async def test_every_private_route_answers_401_without_a_token(
    client: httpx.AsyncClient, app: Any
) -> None:
    checked = 0
    for route in _api_routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", str(uuid.uuid4()))
        # HEAD answers wherever GET does, so it is as closed.
        methods = route.methods | ({"HEAD"} if "GET" in route.methods else set())
        for method in methods:
            for headers in ({}, {"Authorization": "Bearer crm_at_" + "x" * 43}):
                response = await client.request(method, path, json={}, headers=headers)
                assert response.status_code == 401, f"{method} {route.path}: {response.status_code}"
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.headers["content-type"] == "application/problem+json"
                checked += 1
    assert checked >= 40
