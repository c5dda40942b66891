"""Where a webhook may be delivered: the SSRF guard.

The target's host is resolved on every attempt (DNS can change between attempts) and every
address it resolves to must be public: private, loopback, link-local (the cloud metadata
service at 169.254.169.254 among them), shared, multicast, reserved and unspecified ranges
are refused unless `CRM_WEBHOOK_ALLOW_PRIVATE_TARGETS=true`. The connection is then made to
the address that was checked (the host name still goes in `Host` and TLS SNI), so a second
lookup cannot swap it. In production only https targets are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from crm_service.config import Environment, Settings

# Not covered by `is_private` on every Python version, and never a webhook receiver.
_ALSO_REFUSED = (
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),
    ipaddress.ip_network("fd00:ec2::/32"),  # a cloud metadata service over IPv6
)


class TargetRefused(Exception):
    """The target may not be delivered to; `reason` is a value-free code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked address to connect to
    path: str  # path and query

    @property
    def url(self) -> str:
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    return not any(ip in network for network in _ALSO_REFUSED)


def check_url(url: str, settings: Settings) -> tuple[str, str, int, str]:
    """The scheme, host, port and path of an acceptable URL (no lookup)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("not_http_url")
    if parts.username or parts.password:
        raise TargetRefused("credentials_in_url")
    if settings.env is Environment.PRODUCTION and parts.scheme != "https":
        raise TargetRefused("https_required")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("bad_port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def checked_target(url: str, settings: Settings) -> Target:
    """Resolve `url`'s host now and pick an address it may be delivered to."""
    scheme, host, port, path = check_url(url, settings)
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError):
        raise TargetRefused("dns_failure") from None
    if not addresses:
        raise TargetRefused("dns_failure")
    if not settings.webhook_allow_private_targets and not all(map(is_public, addresses)):
        raise TargetRefused("private_address")
    return Target(scheme=scheme, host=host, port=port, address=addresses[0], path=path)
