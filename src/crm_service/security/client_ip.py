"""Client address resolution: what `request.client` says is always an IP address, or nothing.

The client is the socket peer, unless that peer is in CRM_TRUSTED_PROXIES: then the
X-Forwarded-For hops are walked from the right (the hop the nearest proxy appended) for as
long as each one is itself a trusted proxy, and the first untrusted hop is the client. A
client outside the trusted networks cannot choose its own address, and no hop is believed
unless it parses as an address: whatever lands in `scope["client"]` is the canonical text of
an `ipaddress` address (IPv4 clients seen through a dual-stack socket as `::ffff:a.b.c.d`
written as IPv4), so the audit log, the allowlists and the database columns behind them only
ever see valid addresses.

Only the address is taken from proxies: links (and HSTS) come from CRM_PUBLIC_BASE_URL, so
`X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` are not read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The forms proxies write: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]`
# and `[2001:db8::1]:4711`. Zone ids (`fe80::1%eth0`) are refused: they name an interface of
# the sender, mean nothing here and have no length limit.
_HOP = re.compile(
    r"\[(?P<bracketed>[0-9A-Fa-f:.]+)\](?::(?P<port6>[0-9]{1,5}))?"
    r"|(?P<ipv4>[0-9.]+)(?::(?P<port4>[0-9]{1,5}))?"
    r"|(?P<ipv6>[0-9A-Fa-f:.]+)"
)
# `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535`; anything longer is not read at all.
_LONGEST_HOP = 53


def parse_address(text: str) -> Address | None:
    """The address in one hop (a port is dropped), or None when the hop is not an address."""
    text = text.strip()
    if len(text) > _LONGEST_HOP:
        return None
    match = _HOP.fullmatch(text)
    if match is None:
        return None
    port = match["port6"] or match["port4"]
    if port is not None and int(port) > 65535:
        return None
    address: Address
    try:
        if match["ipv4"] is not None:
            address = ipaddress.IPv4Address(match["ipv4"])
        else:
            address = ipaddress.IPv6Address(match["bracketed"] or match["ipv6"])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_hops(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every X-Forwarded-For hop, left to right; several header lines are one list (RFC 9110
    §5.3). A header that is present but blank lists no hops."""
    values = [value.decode("latin-1") for name, value in headers if name == b"x-forwarded-for"]
    joined = ",".join(value for value in values if value.strip())
    return joined.split(",") if joined else []


class ClientAddressMiddleware:
    """Sets `scope["client"]` to the resolved client address, or None when it is unknown."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["client"] = self.resolve(scope)
        await self.app(scope, receive, send)

    def is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted)

    def resolve(self, scope: Scope) -> tuple[str, int] | None:
        peer = scope.get("client")
        address = parse_address(peer[0]) if peer else None
        if address is None or not peer:
            # A Unix socket or a server that reports no peer: the address is unknown.
            return None
        port = peer[1]
        if not self.is_trusted(address):
            return (str(address), port)
        for hop in reversed(forwarded_hops(scope["headers"])):
            hop_address = parse_address(hop)
            if hop_address is None:
                # A hop that is no address (`unknown`, garbage, overlong) stops the walk, and the
                # client is unknown. The alternatives, the nearest trusted hop or the socket peer,
                # are proxies' addresses: recorded as an audit event's actor they would blame the
                # proxy, and an allowlist that admits the proxies' network would admit a client
                # nobody vouched for. An unknown client is refused by every allowlist and audited
                # with a null address.
                return None
            address, port = hop_address, 0  # a forwarded client's port is not known
            if not self.is_trusted(address):
                break
        # Without an untrusted hop the left-most one is the client: a caller inside the trusted
        # networks, or the proxy itself when it sent no header (its own health checks).
        return (str(address), port)
