"""Which hosts a registry may send mirror to: a token realm (which gets the account's
credentials) or a redirect's target. Decided on the addresses the host stands for, not on
its spelling: `[::ffff:169.254.169.254]`, `2852039166`, `0xa9fea9fe` and `169.254.43518`
all reach the instance-metadata service, and a name may resolve to it.

Refused: instance-metadata endpoints, link-local, multicast and unspecified addresses
(an IPv4-mapped IPv6 address is judged as its IPv4 address), and any numeric host that is
not written canonically (a dotted quad, or an IPv6 literal), whatever it would mean.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import httpx

from mirror.errors import InvalidUpstreamDataError, printable

__all__ = ["refuse_forbidden_redirect", "refused_address", "refused_host"]

# Cloud instance-metadata endpoints (IMDS, ECS task metadata, GCE).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)
METADATA_NAMES = frozenset({"metadata.google.internal", "instance-data"})
# A host of digits, dots and hex prefixes only: a number, however spelled.
_NUMERIC_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$")


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why no request may go to `address`; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "an instance-metadata address"
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return "a link-local, multicast or unspecified address"
    return None


def refused_host(host: str, *, resolve: bool = True) -> str | None:
    """Why no request with credentials (or at all, for a redirect) may go to `host`;
    None when it may. A name is resolved and every address it has is judged; one that
    does not resolve is left to fail on connect."""
    host = host.lower().strip("[]").rstrip(".")
    if host in METADATA_NAMES:
        return "an instance-metadata address"
    try:
        return refused_address(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _NUMERIC_RE.match(host):
        return "a numeric address not written as a dotted quad"
    if not resolve:
        return None
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for *_, sockaddr in found:
        reason = refused_address(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        if reason is not None:
            return f"{reason} (what {host} resolves to)"
    return None


def refuse_forbidden_redirect(response: httpx.Response) -> None:
    """A response hook: a redirect to a host refused_host refuses fails the request
    before it is followed."""
    if not response.has_redirect_location:
        return
    target = response.request.url.join(response.headers["location"])
    reason = refused_host(target.host)
    if reason is not None:
        raise InvalidUpstreamDataError(
            f"{response.request.url.host} redirected to {printable(target.host, limit=100)}, "
            f"{reason}: not followed",
            hint="the registry, or a proxy in front of it, sends requests where they must not go",
        )
