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
from collections.abc import Callable

import httpx

from mirror.errors import InvalidUpstreamDataError, printable

__all__ = ["judged_answers", "redirect_guard", "refused_address", "refused_host"]

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


Answer = tuple[int, int, int, tuple[object, ...]]  # family, type, protocol, socket address


def judged_answers(host: str, port: int | None) -> tuple[list[Answer], str | None]:
    """`host` resolved once: the answers whose address may be used, and why the last
    refused one was refused (None when none was). OSError when it does not resolve."""
    allowed: list[Answer] = []
    refused = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        reason = refused_address(ipaddress.ip_address(str(address[0]).split("%", 1)[0]))
        if reason is None:
            allowed.append((family, kind, proto, address))
        else:
            refused = reason
    return allowed, refused


def refused_host(host: str, *, resolve: bool = True) -> str | None:
    """Why no request with credentials (or at all, for a redirect) may go to `host`;
    None when it may. With `resolve`, a name is resolved and every address it has is
    judged; one that does not resolve is left to fail on connect."""
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
        _, refused = judged_answers(host, None)
    except (OSError, UnicodeError):
        return None
    return f"{refused} (what {host} resolves to)" if refused else None


def redirect_guard(*, resolve: bool) -> Callable[[httpx.Response], None]:
    """A response hook: a redirect to a host refused_host refuses fails the request
    before it is followed. Without `resolve`, names are left to the transport, which
    judges the addresses it connects to (mirror.oci.wire): one lookup, not two, on a
    path every redirected blob takes."""

    def guard(response: httpx.Response) -> None:
        if not response.has_redirect_location:
            return
        target = response.request.url.join(response.headers["location"])
        reason = refused_host(target.host, resolve=resolve)
        if reason is not None:
            raise InvalidUpstreamDataError(
                f"{response.request.url.host} redirected to "
                f"{printable(target.host, limit=100)}, {reason}: not followed",
                hint="the registry, or a proxy in front of it, sends requests where they "
                "must not go",
            )

    return guard
