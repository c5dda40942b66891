"""IP allowlists: parsing CIDR lists and deciding whether a client address is inside one.

The client address is the one resolved by `client_ip.py` (the socket peer, or the right-most
untrusted X-Forwarded-For hop behind a trusted proxy), never a header a client chooses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from crm_service.errors import FieldProblem, Forbidden, ValidationFailed

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpNotAllowed(Forbidden):
    slug, title = "ip-not-allowed", "Access from this address is not allowed"
    # The refusal is audited: its event commits with the 403.
    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("Your organization does not allow access from this network address.")


def parse_networks(cidrs: Iterable[str], *, field: str = "body.cidrs") -> list[Network]:
    """Normalized networks; a 422 naming each entry that is not an IPv4/IPv6 network."""
    networks, problems = [], []
    for index, text in enumerate(cidrs):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            problems.append(
                FieldProblem(
                    field=f"{field}.{index}",
                    rule="ip_network",
                    message="must be an IPv4 or IPv6 address or network in CIDR notation",
                )
            )
    if problems:
        raise ValidationFailed("Some entries are not IP networks.", errors=problems)
    return networks


def is_allowed(networks: Iterable[Network], address: str | None) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is the IPv4 client.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)
