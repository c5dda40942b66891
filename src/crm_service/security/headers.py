"""Headers every response carries, whatever answered it: routes, error handlers, the body
limit, the method checks, CORS preflights and the last-resort 500.

- `Cache-Control: no-store` everywhere: responses carry personal data, tokens and secrets,
  and a route that is safe to cache can be made an exception when one exists.
- `X-Content-Type-Options: nosniff`: a JSON body holding user-supplied text is never run as
  a script or rendered as HTML by a browser that guesses its type.
- `Referrer-Policy: no-referrer`: URLs of this service (ids, one-time tokens in the public
  pages) are not sent to the sites its pages link to.
- `Strict-Transport-Security` when CRM_PUBLIC_BASE_URL is https: browsers that reached the
  service once never again try it over plain HTTP (two years, subdomains too). A service
  served over plain HTTP does not send it: it would promise TLS that is not there.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = {
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        if hsts:
            self.headers["Strict-Transport-Security"] = HSTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
