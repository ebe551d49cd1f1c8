"""Pull budgets: what an upstream lets us spend, read from its own answers.

Docker Hub (and registries that copy it) put `ratelimit-limit: 100;w=21600` and
`ratelimit-remaining: 76;w=21600` on manifest GETs and HEADs. Nothing here hard-codes a
number: a Budget holds the last figures a credential's responses carried, counts GETs in
flight so concurrent images never overspend, and answers "not now" as a QuotaWait with
a time to come back. Waiting itself is the scheduler's job, never the copier's.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import structlog

__all__ = ["Budget", "Pacer", "QuotaWait", "RateLimit", "recheck_interval"]

log = structlog.get_logger(__name__)
_NUMBER_RE = re.compile(r"^\s*(\d+)")
_WINDOW_RE = re.compile(r"\bw\s*=\s*(\d+)")
MIN_RECHECK_SECONDS = 1.0
MAX_RECHECK_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 120.0


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


def recheck_interval(window: float) -> float:
    """How long to wait before a free HEAD re-reads the remaining quota.

    A twentieth of the window: a 20 s test window is re-read every second, Docker Hub's
    6 h window every 5 minutes (a HEAD is not a pull, but it is still a request).
    """
    if window <= 0:
        return MIN_RECHECK_SECONDS * 10
    return min(MAX_RECHECK_SECONDS, max(MIN_RECHECK_SECONDS, window / 20))


class QuotaWait(Exception):
    """Work for `registry` must wait `seconds` before spending again.

    `throttled`: the registry throttles requests rather than counting pulls; one that is
    still throttling when the pass's time is up has failed, not spent its quota."""

    def __init__(
        self, registry: str, seconds: float, reason: str, *, throttled: bool = False
    ) -> None:
        super().__init__(f"{registry}: wait {seconds:.1f}s ({reason})")
        self.registry = registry
        self.seconds = seconds
        self.reason = reason
        self.throttled = throttled


class Budget:
    """One credential's pull budget on one registry (thread-safe)."""

    def __init__(
        self,
        registry: str,
        label: str,
        *,
        reserve: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.label = label
        self.reserve = reserve
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: RateLimit | None = None
        self._in_flight = 0
        # Claimed GETs whose answer (already counted in `_seen`) arrived but that are not
        # settled yet: not to be subtracted a second time.
        self._reflected = 0
        self._blocked_until = 0.0
        self._backoff = 0
        # Pulls the headers claimed but the registry refused (a 429 while they said some
        # were left): other clients on a shared egress IP (CodeBuild, NAT) spend the same
        # quota between two of our requests. Later figures are read that much lower.
        self.overclaim = 0
        self.spent = 0

    @property
    def last_seen(self) -> RateLimit | None:
        with self._lock:
            return self._seen

    def observe(self, response: httpx.Response) -> None:
        """httpx response hook: keep the figures of every answer that carries them."""
        seen = RateLimit.from_headers(response.headers)
        if seen is None:
            return
        request = response.request
        pulled = (
            request.method == "GET"
            and response.status_code == 200
            and "/manifests/" in request.url.path
        )
        with self._lock:
            self._seen = seen
            self._reflected += pulled

    def available(self) -> int | None:
        """Pulls that may be spent now above the reserve; None when the registry
        advertises no limit."""
        with self._lock:
            return self._available_locked()

    def _available_locked(self) -> int | None:
        if self._blocked_until > self._clock():
            return 0
        if self._seen is None:
            return None
        unreflected = self._in_flight - self._reflected
        return self._seen.remaining - self.overclaim - unreflected - self.reserve

    def take(self) -> None:
        """Claim one manifest GET, or raise QuotaWait when it would dig into the reserve."""
        with self._lock:
            available = self._available_locked()
            if available is not None and available < 1:
                raise QuotaWait(self.registry, self._wait_locked(), self._reason_locked())
            self._in_flight += 1

    def settle(self, *, spent: bool) -> None:
        """The claimed GET finished; `spent` when the registry served it (so counted it)."""
        with self._lock:
            self._in_flight -= 1
            self.spent += spent
            if spent:
                self._reflected = max(0, self._reflected - 1)
                self._backoff = 0

    def exhausted(self, retry_after: float | None) -> QuotaWait:
        """A 429 TOOMANYREQUESTS: the quota is spent, whatever the headers claimed.

        The budget counts as empty until a later answer's figures, corrected by what the
        headers are now known to overclaim, show a pull left; meanwhile the scheduler
        re-checks with free HEADs, a twentieth of the window apart. Retry-After, when
        given, blocks until then; with no figures at all, a backoff that grows per
        consecutive 429 does. So a registry answers at most one 429 per window."""
        with self._lock:
            self._backoff += 1
            now = self._clock()
            seen = self._seen
            if seen is not None:
                # Our own GETs still in flight may be in `remaining` or not: counting them
                # as overclaim costs at most that many pulls a window; not counting them
                # costs a 429 a window. Never so much that a full window would not try one.
                learned = min(seen.remaining, seen.limit - 1)
                self.overclaim = max(self.overclaim, learned)
                self._seen = RateLimit(seen.limit, 0, seen.window, seen.source)
            if retry_after is not None:
                wait = retry_after
            elif seen is not None and seen.window:
                wait = recheck_interval(seen.window)
            else:
                wait = min(MAX_BACKOFF_SECONDS, recheck_interval(0.0) * 2 ** (self._backoff - 1))
            self._blocked_until = now + wait
            return QuotaWait(self.registry, wait, "429 TOOMANYREQUESTS")

    def throttled(self) -> QuotaWait:
        """A throttling 429 outlived its retries: back off with jitter."""
        with self._lock:
            self._backoff += 1
            wait = min(MAX_BACKOFF_SECONDS, 2.0**self._backoff) * random.uniform(0.5, 1.0)
            self._blocked_until = self._clock() + wait
            return QuotaWait(self.registry, wait, "throttled (429)", throttled=True)

    def _wait_locked(self) -> float:
        now = self._clock()
        if self._blocked_until > now:
            return self._blocked_until - now
        return recheck_interval(self._seen.window if self._seen else 0.0)

    def _reason_locked(self) -> str:
        seen = self._seen
        if seen is None or self._blocked_until > self._clock():
            return "registry asked us to wait"
        corrected = f" (headers overclaim by {self.overclaim})" if self.overclaim else ""
        return f"{seen.remaining} of {seen.limit} pulls left{corrected}, reserve {self.reserve}"


class Pacer:
    """At most `rate` calls a second across threads: ECR's PutImage rate per Region, or a
    registry's request throttle (public.ecr.aws: 1 a second anonymous, 10 signed in).

    Without a rate it only watches. `slow_down()`, on a throttling 429, sets one from the
    rate calls were going at (at most FIRST_RATE), or halves the one it has (at most once a
    second, since the 429s of one burst arrive together); never below MIN_RATE."""

    MIN_RATE = 0.5
    FIRST_RATE = 10.0  # public.ecr.aws's signed-in rate; Docker Hub's abuse limit is higher
    WATCHED = 16  # recent calls kept to estimate the rate they went at

    def __init__(
        self, rate: float | None, clock: Callable[[], float] = time.monotonic, *, name: str = ""
    ) -> None:
        self.rate = rate
        self.name = name
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

    def observe(self, response: httpx.Response) -> None:
        """httpx response hook: a 429 without rate-limit headers is a throttle."""
        if response.status_code == 429 and RateLimit.from_headers(response.headers) is None:
            self.slow_down()
