"""Origins (scheme, host, port): the unit that credentials and pagination are bound to."""

from __future__ import annotations

import httpx

__all__ = ["Origin", "origin_of", "same_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin_of(url: httpx.URL | str) -> Origin:
    parsed = httpx.URL(str(url)) if isinstance(url, str) else url
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)
    return parsed.scheme, parsed.host.lower(), port


def same_origin(a: httpx.URL | str, b: httpx.URL | str) -> bool:
    return origin_of(a) == origin_of(b)
