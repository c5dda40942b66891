"""Every mounted route commits the request's session through the one route class: a router
built without it would answer 200 to every write and keep none of them."""

from __future__ import annotations

from fastapi.routing import APIRoute

from crm_service.db.session import CommitOnSuccessRoute
from crm_service.main import ROUTERS


def test_every_route_commits_through_the_one_route_class() -> None:
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 80
    assert [r.path for r in routes if not isinstance(r, CommitOnSuccessRoute)] == []
