"""CORS for the browser origins listed in CRM_CORS_ORIGINS, and for no other.

Our own rather than Starlette's CORSMiddleware because that one answers every origin's
preflight with the allowed methods and headers (and a text/plain 400 when it refuses), and
adds `Access-Control-Expose-Headers` to responses for origins it does not allow. Here an
origin that is not listed sees no CORS header at all: its preflight is an ordinary OPTIONS
request (405 problem+json, like any method a path does not answer), so the browser refuses.

No `Access-Control-Allow-Credentials`: tokens travel in `Authorization`, never in cookies.
Mounted outside the request context and everything within, so errors (401, 404, 405, 413,
the last-resort 500) carry the headers too and a browser client can read the problem and its
X-Request-ID instead of seeing a network failure. The price: a preflight, answered here, is
neither logged nor given a request id.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-Match", "X-Request-ID")
# What a browser client reads besides the body: concurrency, created records, rate limits,
# and the id to quote when reporting a problem.
EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "X-Request-ID",
)
PREFLIGHT_MAX_AGE_SECONDS = 600


class CorsMiddleware:
    def __init__(self, app: ASGIApp, *, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        # No `Origin` reads as "", which is no configured origin.
        origin = request_headers.get("origin", "")
        allowed = origin in self.origins
        if (
            allowed
            and scope["method"] == "OPTIONS"
            and "access-control-request-method" in request_headers
        ):
            await self._preflight(origin)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # Whatever the origin, the answer depends on it: caches must keep them apart.
                headers.add_vary_header("Origin")
                if allowed:
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _preflight(origin: str) -> Response:
        # The whole policy is stated; the browser compares it with what it asked for.
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )
