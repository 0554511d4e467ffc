"""Which IP addresses the probe may dial: the decision is made before any socket is opened.

Whoever signs up chooses the domain, hence the MX records, hence the addresses our SMTP client
connects to. Left alone, a sign-up could make the verifier talk to this host (127.0.0.1, 0.0.0.0),
the internal network (10/8, fc00::/7), a cloud metadata service (169.254.169.254) or a multicast
group. So only global unicast addresses are contacted by default; loopback, private, link-local,
shared and documentation ranges only when `allow_private_mx` says so (the sandbox, internal
deployments); multicast, broadcast, unspecified and reserved addresses never (they are not a mail
host anywhere). An IPv4 address embedded in IPv6 (mapped, NAT64, 6to4) is judged as that IPv4.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import TypeAlias

IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


class AddressClass(enum.StrEnum):
    """What kind of destination an address is, as written in the evidence."""

    GLOBAL = "global"
    LOOPBACK = "loopback"
    PRIVATE = "private"  # RFC 1918, unique-local, shared (CGNAT), documentation, benchmarking
    LINK_LOCAL = "link-local"  # 169.254/16 (cloud metadata lives there), fe80::/10
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    UNSPECIFIED = "unspecified"  # 0.0.0.0, ::, 0/8: "this host" on Linux
    RESERVED = "reserved"  # 240/4 and other ranges no mail host can have
    INVALID = "not an IP address"


#: Dialled only when `allow_private_mx` is on.
PRIVATE_CLASSES = frozenset({AddressClass.LOOPBACK, AddressClass.PRIVATE, AddressClass.LINK_LOCAL})


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _parse(address: str) -> IP | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None


def classify(address: str) -> AddressClass:
    """The class of `address` (a literal IPv4 or IPv6 address; anything else is INVALID)."""
    ip = _parse(address)
    if ip is None:
        return AddressClass.INVALID
    if isinstance(ip, ipaddress.IPv6Address) and (v4 := _embedded_ipv4(ip)) is not None:
        ip = v4
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return AddressClass.UNSPECIFIED
    if ip == _LIMITED_BROADCAST:
        return AddressClass.BROADCAST
    if ip.is_multicast:
        return AddressClass.MULTICAST
    if ip.is_loopback:
        return AddressClass.LOOPBACK
    if ip.is_link_local:
        return AddressClass.LINK_LOCAL
    if ip.is_reserved:
        return AddressClass.RESERVED
    if ip.is_global:
        return AddressClass.GLOBAL
    return AddressClass.PRIVATE


def may_contact(address: str, *, allow_private: bool) -> bool:
    """Whether the probe may open a connection to `address`."""
    kind = classify(address)
    return kind is AddressClass.GLOBAL or (allow_private and kind in PRIVATE_CLASSES)


def network_of(address: str) -> str:
    """The network an address stands for when counting independent hosts: a /24 (IPv4) or a /48
    (IPv6) for public addresses, the address itself otherwise (loopback test worlds)."""
    ip = _parse(address)
    if ip is None or classify(address) is not AddressClass.GLOBAL:
        return address
    prefix = 24 if isinstance(ip, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
