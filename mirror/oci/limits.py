"""Every bound on what a registry may make mirror read, hold or wait for, with its reason.

A hostile or broken registry must fail its own images, never the pass: bodies are read
raw (never decompressed) up to a named limit, and a deadline set around a tag listing or
an image stops a body that drips one byte at a time, however patient the socket timeout.

Deadlines live in a context variable, so the code that reads bodies checks whichever
deadline its caller set without threading it through every signature; work handed to a
thread pool carries it along with `contextvars.copy_context()`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mirror.errors import DeadlineExceededError, InvalidUpstreamDataError, printable

if TYPE_CHECKING:  # imported where a request is made: loading a config never pays it
    import httpx

__all__ = [
    "ERROR_BODY_BYTES",
    "LISTING_PAGES",
    "LISTING_TAGS",
    "MANIFEST_BYTES",
    "REFERRERS_PAGES",
    "TAG_PAGE_BYTES",
    "TOKEN_BODY_BYTES",
    "Timeouts",
    "check_deadline",
    "deadline",
    "read_bounded",
    "read_error_body",
    "request_timeout",
    "require_identity",
]

# containerd and containers/image refuse manifests over 4 MiB; so does mirror.
MANIFEST_BYTES = 4 * 2**20
# A tag-list or referrers page: 4 MiB holds ~100,000 tags, the most one listing may have.
TAG_PAGE_BYTES = 4 * 2**20
LISTING_TAGS = 100_000
# Docker Hub pages hold 100 tags: 1,000 pages reach LISTING_TAGS there.
LISTING_PAGES = 1_000
REFERRERS_PAGES = 100
# An error body is read only for its code and message.
ERROR_BODY_BYTES = 64 * 2**10
# A token response is a small JSON object; JWTs with many scopes stay far below this.
TOKEN_BODY_BYTES = 1 * 2**20


@dataclass(frozen=True)
class Timeouts:
    """Socket timeouts for every request, and the deadlines of the config's `timeouts:`."""

    connect: float = 10.0
    read: float = 30.0  # the longest silence between two reads of one response
    metadata: float = 30.0  # one tag listing (all pages), one image's checks, one manifest
    image: float = 1800.0  # copying one image, blobs included
    unreachable: float = 10.0  # a registry refusing every connection: its breaker's give-up

    def httpx(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=300.0)


@dataclass(frozen=True)
class _Deadline:
    at: float  # time.monotonic()
    seconds: float
    what: str


_current: ContextVar[_Deadline | None] = ContextVar("mirror_deadline", default=None)


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Bound everything inside to `seconds`; an earlier deadline already set still wins."""
    outer = _current.get()
    mine = _Deadline(time.monotonic() + seconds, seconds, what)
    token = _current.set(outer if outer is not None and outer.at <= mine.at else mine)
    try:
        yield
    finally:
        _current.reset(token)


def check_deadline() -> None:
    """Raise DeadlineExceededError once the innermost deadline has passed."""
    current = _current.get()
    if current is not None and time.monotonic() >= current.at:
        raise DeadlineExceededError(
            f"{current.what} took longer than its {current.seconds:g}s deadline",
            hint="the registry is too slow or stalls; raise timeouts: in the config if it is "
            "only slow",
        )


def request_timeout(base: httpx.Timeout) -> httpx.Timeout:
    """`base`, with no socket wait longer than what is left of the current deadline."""
    import httpx

    current = _current.get()
    if current is None:
        return base
    check_deadline()
    left = max(0.1, current.at - time.monotonic())

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool)
    )


def require_identity(response: httpx.Response, what: str) -> None:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidUpstreamDataError(
            f"{what}: the registry answered with Content-Encoding {printable(encoding)!r} "
            "although mirror asked for identity",
            hint="a proxy between mirror and the registry compresses responses; exempt "
            "registry traffic from compression",
        )


def read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    """A streamed response's raw body, refused past `limit` bytes or past the deadline.

    Raw means undecoded: a compressed body is refused, never inflated in memory."""
    require_identity(response, what)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidUpstreamDataError(
            f"{what}: {int(declared)} bytes announced, more than the {limit}-byte limit"
        )
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limit:
            raise InvalidUpstreamDataError(f"{what}: more than the {limit}-byte limit")
        check_deadline()
    return bytes(body)


def read_error_body(response: httpx.Response) -> bytes:
    """At most ERROR_BODY_BYTES of an error response, for its code and message; the rest
    is never read. A body that does not arrive in time is simply left out."""
    import httpx

    if response.is_stream_consumed:  # read already (not a streamed request)
        try:
            return response.content[:ERROR_BODY_BYTES]
        except httpx.ResponseNotRead:
            return b""
    body = bytearray()
    try:
        for chunk in response.iter_raw():
            body += chunk
            if len(body) >= ERROR_BODY_BYTES:
                break
            check_deadline()
    except (httpx.HTTPError, DeadlineExceededError):
        pass
    return bytes(body[:ERROR_BODY_BYTES])
