"""What a registry says about how much and how fast: its rate-limit headers, and a pacer
for a registry that throttles requests.

Docker Hub (and registries that copy it) put `ratelimit-limit: 100;w=21600` and
`ratelimit-remaining: 76;w=21600` on manifest GETs and HEADs: RateLimit is those figures,
parsed; what to spend of them is the engine's business (engine/quota.py). A registry that
throttles (public.ecr.aws's `429 Rate exceeded`) counts requests, not pulls: a Pacer keeps
its requests under a rate, stated or learnt from its 429s.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog

from mirror.oci.origin import origin_of

__all__ = ["Pacer", "RateLimit", "SharedAllowance"]

log = structlog.get_logger(__name__)
_NUMBER_RE = re.compile(r"^\s*(\d+)")
_WINDOW_RE = re.compile(r"\bw\s*=\s*(\d+)")


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    window: float  # seconds; 0 when the header names none
    source: str = ""  # `docker-ratelimit-source`: the address or account being counted

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """Parse the headers; None when absent or malformed (the registry then has no
        advertised limit, and only 429s slow us down)."""
        limit_text = headers.get("ratelimit-limit")
        remaining_text = headers.get("ratelimit-remaining")
        if not limit_text or not remaining_text:
            return None
        limit = _NUMBER_RE.match(limit_text)
        remaining = _NUMBER_RE.match(remaining_text)
        if not limit or not remaining:
            return None
        window = _WINDOW_RE.search(remaining_text) or _WINDOW_RE.search(limit_text)
        return cls(
            limit=int(limit.group(1)),
            remaining=int(remaining.group(1)),
            window=float(window.group(1)) if window else 0.0,
            source=headers.get("docker-ratelimit-source", ""),
        )


class SharedAllowance(Protocol):
    """Requests a second shared with other processes (mirror/coordination/pacing.py):
    `take()` returns when one more may go."""

    def take(self) -> None: ...


class Pacer:
    """At most `rate` calls a second across threads: ECR's PutImage rate per Region, or a
    registry's request throttle (public.ecr.aws: 1 a second anonymous, 10 signed in).
    `shared`: the same registry's allowance across processes, taken after this one's.

    Without a rate it only watches. `slow_down()`, on a throttling 429, sets one from the
    rate calls were going at (at most FIRST_RATE), or halves the one it has (at most once a
    second, since the 429s of one burst arrive together); never below MIN_RATE."""

    MIN_RATE = 0.5
    FIRST_RATE = 10.0  # public.ecr.aws's signed-in rate; Docker Hub's abuse limit is higher
    WATCHED = 16  # recent calls kept to estimate the rate they went at

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "",
        shared: SharedAllowance | None = None,
    ) -> None:
        self.rate = rate
        self.name = name
        self.shared = shared
        self._clock = clock
        self._next = 0.0
        self._recent: deque[float] = deque(maxlen=self.WATCHED)
        self._slowed_at: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = now if self.rate is None else max(now, self._next)
            if self.rate is not None:
                self._next = slot + 1.0 / self.rate
            self._recent.append(slot)
        if slot > now:
            time.sleep(slot - now)
        if self.shared is not None:
            self.shared.take()

    def slow_down(self) -> None:
        with self._lock:
            now = self._clock()
            if self._slowed_at is not None and now - self._slowed_at < 1.0:
                return
            self._slowed_at = now
            if self.rate is None:
                span = self._recent[-1] - self._recent[0] if len(self._recent) > 1 else 0.0
                going = (len(self._recent) - 1) / span if span > 0 else 2 * self.MIN_RATE
                self.rate = max(self.MIN_RATE, min(self.FIRST_RATE, going / 2))
            else:
                self.rate = max(self.MIN_RATE, self.rate / 2)
            self._next = max(self._next, now + 1.0 / self.rate)
            rate = self.rate
        log.info("requests_paced", registry=self.name, per_second=round(rate, 2))

    def hook(self, origin: str) -> Callable[[httpx.Request], None]:
        """An httpx request hook: every request to `origin` (the registry's own) waits its
        turn, the second request of a token challenge and a redirect back to the registry
        included; a CDN's are not the registry's requests."""
        paced = origin_of(origin)

        def wait_for_turn(request: httpx.Request) -> None:
            if origin_of(request.url) == paced:
                self.wait()

        return wait_for_turn

    def observe(self, response: httpx.Response) -> None:
        """httpx response hook: a 429 without rate-limit headers is a throttle."""
        if response.status_code == 429 and RateLimit.from_headers(response.headers) is None:
            self.slow_down()
