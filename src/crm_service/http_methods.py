"""Method semantics Starlette's router lacks, decided in one place before routing.

- A path belongs to the routes matching it with the fewest parameters (a literal segment
  beats a parameter), so `/v1/contacts/search` (POST only) is not also
  `GET /v1/contacts/{record_id}` with the id "search" (a 422); every other method there is
  a 405.
- A 405 lists in `Allow` every method of the path (RFC 9110 §15.5.6), not only those of the
  first route that matched, and stays a problem+json.
- `HEAD` works wherever `GET` does (RFC 9110 §9.3.2): it runs as the `GET` (the same
  authentication, status and headers, `Content-Length` included) and the body is dropped.
  FastAPI routes declared with GET do not answer HEAD, and adding it to them would put a
  second operation per path into the OpenAPI document.

Paths no route matches are left to the router (404, or its trailing-slash redirect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_service.errors import MethodNotAllowed, render

_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class _RoutePath:
    regex: re.Pattern[str]
    parameters: int
    methods: frozenset[str]


def _allow_order(method: str) -> tuple[int, str]:
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


class AllowedMethodsMiddleware:
    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        # Starlette builds the middleware stack at the first request, when every route is in.
        # FastAPI keeps included routers nested; this is its own walk of them (the one its
        # OpenAPI document is generated from).
        self.paths = [
            _RoutePath(
                regex=route.path_regex,
                parameters=len(route.param_convertors),
                # HEAD is answered here for every GET, whether or not the route lists it.
                methods=frozenset(route.methods) - {"HEAD"},
            )
            for route in iter_route_contexts(router.routes)
            if route.methods
        ]

    def allowed_methods(self, path: str) -> set[str] | None:
        """The methods of the path's most specific routes; None when no route matches it."""
        fewest: int | None = None
        methods: set[str] = set()
        for route in self.paths:
            if not route.regex.match(path):
                continue
            if fewest is None or route.parameters < fewest:
                fewest, methods = route.parameters, set(route.methods)
            elif route.parameters == fewest:
                methods |= route.methods
        if fewest is None:
            return None
        if "GET" in methods:
            methods.add("HEAD")
        return methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The router's own reading of the path (without any root_path), so both agree.
        allowed = self.allowed_methods(get_route_path(scope))
        method = scope["method"]
        if allowed is None or (method in allowed and method != "HEAD"):
            await self.app(scope, receive, send)
        elif method == "HEAD":
            await self._head_as_get(scope, receive, send)
        else:
            error = MethodNotAllowed(sorted(allowed, key=_allow_order))
            await render(scope.get("path"), error)(scope, receive, send)

    async def _head_as_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # The scope is shared with the outer middleware, whose access log says HEAD.
        scope["method"] = "GET"
        try:
            await self.app(scope, receive, send_without_body)
        finally:
            scope["method"] = "HEAD"
