"""Client IP resolution: the socket peer, unless it is a trusted proxy.

Uvicorn's ProxyHeadersMiddleware does the work: when the peer is in CRM_TRUSTED_PROXIES it
takes the right-most X-Forwarded-For hop that is not itself trusted; otherwise the header
is ignored, so a client cannot choose its own address.
"""

from __future__ import annotations

from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def resolve_client_ip(app: ASGIApp, trusted_proxies: list[str]) -> ASGIApp:
    # An empty list trusts nobody (uvicorn's own default would trust 127.0.0.1).
    return ProxyHeadersMiddleware(app, trusted_hosts=trusted_proxies)
