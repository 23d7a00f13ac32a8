"""Which addresses and hosts a fetch may reach.

The blocked networks, IP-literal parsing in every spelling ``inet_aton`` accepts, the verdict on
a resolved address (:func:`address_refusal`), host normalisation and the host allowlist, and the
system resolver :class:`~mediaguard.media.fetch.GuardedFetcher` uses by default.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable

__all__ = [
    "IPAddress",
    "Resolver",
    "address_refusal",
    "default_resolver",
    "host_allowed",
    "literal_refusal",
    "normalise_host",
    "parse_ip_literal",
    "parse_ipv4_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_HOSTNAME_CHARS = re.compile(r"[a-z0-9._-]+")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HEX_PART = re.compile(r"0x[0-9a-f]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

# Checked after loopback and embedded-IPv4 handling; the ipaddress properties back these up.
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified ('this network') address"),
        ("10.0.0.0/8", "private address"),
        ("172.16.0.0/12", "private address"),
        ("192.168.0.0/16", "private address"),
        ("100.64.0.0/10", "shared (CGNAT) address"),
        ("169.254.0.0/16", "link-local address"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation address"),
        ("198.51.100.0/24", "documentation address"),
        ("203.0.113.0/24", "documentation address"),
        ("192.88.99.0/24", "6to4 relay anycast address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved address"),
        ("::/128", "unspecified address"),
        ("64:ff9b:1::/48", "local-use NAT64 address"),
        ("100::/64", "discard-only address"),
        ("2001::/32", "Teredo address"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation address"),
        ("3fff::/20", "documentation address"),
        ("fc00::/7", "private (unique local) address"),
        ("fe80::/10", "link-local address"),
        ("fec0::/10", "site-local address"),
        ("ff00::/8", "multicast address"),
    )
)

_PROPERTY_REASONS = (
    ("is_unspecified", "unspecified address"),
    ("is_multicast", "multicast address"),
    ("is_link_local", "link-local address"),
    ("is_site_local", "site-local address"),
    ("is_private", "private address"),
    ("is_reserved", "reserved address"),
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


# --------------------------------------------------------------------------- addresses


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``inet_aton`` would read from ``host``, or None if it is not one.

    Accepts 1 to 4 dot-separated parts, each decimal, octal (leading ``0``) or hex (``0x``);
    the last part fills the remaining bytes: ``127.1``, ``0x7f.1``, ``2130706433``.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_inet_aton_part(part) for part in parts]
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    *leading, last = numbers
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    packed = last
    for index, value in enumerate(leading):
        packed |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(packed)


def _inet_aton_part(part: str) -> int | None:
    text = part.lower()
    if _HEX_PART.fullmatch(text):
        return int(text[2:], 16) if len(text) > 2 else 0
    if _OCTAL_PART.fullmatch(text):
        return int(text, 8)
    if _DECIMAL_PART.fullmatch(text):
        return int(text, 10)
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IPv6 literal (brackets optional) or an inet_aton-style IPv4 literal, else None."""
    text = host.strip("[]") if host.startswith("[") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return parse_ipv4_literal(text)


def address_refusal(address: str | IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` must not be connected to, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))
    if ip in _METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "loopback address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _embedded_refusal(ip, *embedded, allow_loopback=allow_loopback)
    for network, reason in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    for attribute, reason in _PROPERTY_REASONS:
        if getattr(ip, attribute, False):
            return reason
    return None if ip.is_global else "non-global address"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip)), "IPv4-compatible"
    return None


def _embedded_refusal(
    ip: ipaddress.IPv6Address, v4: ipaddress.IPv4Address, kind: str, *, allow_loopback: bool
) -> str | None:
    if kind == "IPv4-mapped":  # the same socket address as the IPv4 one, so the same verdict
        return address_refusal(v4, allow_loopback=allow_loopback)
    # Translated forms reach the IPv4 host through a gateway: never a loopback exception.
    reason = address_refusal(v4)
    if reason is not None:
        return f"{kind} address embedding {v4} ({reason})"
    if kind == "IPv4-compatible":
        return "deprecated IPv4-compatible address"
    return None


def default_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, via the system resolver."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in answers:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# --------------------------------------------------------------------------- hosts


def normalise_host(host: str) -> str:
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` matches the allowlist (``*.example.org`` also matches example.org)."""
    host = normalise_host(host)
    for entry in allowed_hosts:
        pattern = normalise_host(entry.strip())
        if pattern.startswith("*."):
            suffix = pattern[2:]
            if host == suffix or host.endswith("." + suffix):
                return True
        elif host == pattern:
            return True
    return False


def _ends_in_number(host: str) -> bool:
    """WHATWG's rule: a host whose last label is numeric must be a valid IPv4 address."""
    return bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))


def literal_refusal(host: str, *, allow_loopback: bool) -> str | None:
    literal = parse_ip_literal(host)
    if literal is not None:
        reason = address_refusal(literal, allow_loopback=allow_loopback)
        return None if reason is None else f"refused address {literal}: {reason}"
    if ":" in host:
        return f"malformed IPv6 host {host!r}"
    if not _HOSTNAME_CHARS.fullmatch(host):
        return f"invalid characters in host {host!r}"
    if _ends_in_number(host):
        return f"malformed numeric host {host!r}"
    return None
