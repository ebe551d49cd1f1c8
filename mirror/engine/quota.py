"""Pull budgets: what an upstream lets us spend, read from its own answers.

Docker Hub (and registries that copy it) put `ratelimit-limit: 100;w=21600` and
`ratelimit-remaining: 76;w=21600` on manifest GETs and HEADs. Nothing here hard-codes a
number: a Budget holds the last figures a credential's responses carried, counts GETs in
flight so concurrent images never overspend, and answers "not now" as a QuotaWait with
a time to come back. Waiting itself is the scheduler's job, never the copier's.

With `coordination`, the budget also takes each pull from the shared ledger
(mirror/coordination/ledger.py) under the key the upstream counts by, so processes on one
egress address or account spend one quota between them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import structlog

from mirror.coordination.ledger import SharedQuota
from mirror.errors import CoordinationError
from mirror.oci.throttle import RateLimit

__all__ = ["Budget", "QuotaWait", "recheck_interval"]

log = structlog.get_logger(__name__)
MIN_RECHECK_SECONDS = 1.0
MAX_RECHECK_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 120.0


def recheck_interval(window: float) -> float:
    """How long to wait before a free HEAD re-reads the remaining quota.

    A twentieth of the window: a 20 s test window is re-read every second, Docker Hub's
    6 h window every 5 minutes (a HEAD is not a pull, but it is still a request).
    """
    if window <= 0:
        return MIN_RECHECK_SECONDS * 10
    return min(MAX_RECHECK_SECONDS, max(MIN_RECHECK_SECONDS, window / 20))


LEDGER_RETRY_SECONDS = 10.0  # a pull the ledger could not be asked for, asked again


@contextmanager
def _bookkeeping(what: str) -> Iterator[None]:
    """The ledger's figures kept up to date: a table that cannot be written to now costs
    the other processes a fresher figure, never this process its image."""
    try:
        yield
    except CoordinationError as exc:
        log.warning("quota_ledger_not_written", step=what, error=exc.message)


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
        shared: Callable[[str], SharedQuota] | None = None,
    ) -> None:
        """`shared(counted_as)`: the ledger's quota for what the upstream counts (its
        `docker-ratelimit-source`, else this credential's label)."""
        self.registry = registry
        self.label = label
        self.reserve = reserve
        self._clock = clock
        self._shared = shared
        self._claims: list[SharedQuota] = []  # ledger claims of GETs not settled yet
        self._answers = threading.local()  # .seen: this thread's last pull's figures
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
        if pulled:  # its claim settles from it, on this thread, next
            self._answers.seen = seen
            return
        account = self._account(seen)
        if account is not None:
            with _bookkeeping("observe"):
                account.observe(seen)

    def _account(self, seen: RateLimit | None) -> SharedQuota | None:
        """The ledger's quota these figures belong to; None without coordination or
        figures (a registry that advertises no limit has nothing to share)."""
        if self._shared is None or seen is None:
            return None
        return self._shared(seen.source or self.label)

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
        """Claim one manifest GET, or raise QuotaWait when it would dig into the reserve,
        here or (with coordination) in the ledger every process spends from."""
        with self._lock:
            available = self._available_locked()
            if available is not None and available < 1:
                raise QuotaWait(self.registry, self._wait_locked(), self._reason_locked())
            self._in_flight += 1
            seen = self._seen
        account = self._account(seen)
        if account is None:
            return
        try:
            refusal = account.take(self.reserve)
        except CoordinationError as exc:  # never spend what the others may have spent
            with self._lock:
                self._in_flight -= 1
            raise QuotaWait(self.registry, LEDGER_RETRY_SECONDS, exc.message) from None
        with self._lock:
            if refusal is None:
                self._claims.append(account)
                return
            self._in_flight -= 1
        wait = refusal.blocked_for or recheck_interval(refusal.window_seconds)
        raise QuotaWait(self.registry, wait, f"{refusal.reason}, reserve {self.reserve}")

    def settle(self, *, spent: bool) -> None:
        """The claimed GET finished; `spent` when the registry served it (so counted it)."""
        with self._lock:
            self._in_flight -= 1
            self.spent += spent
            if spent:
                self._reflected = max(0, self._reflected - 1)
                self._backoff = 0
            claim = self._claims.pop() if self._claims else None
        answer: RateLimit | None = getattr(self._answers, "seen", None)
        self._answers.seen = None
        if claim is not None:
            with _bookkeeping("settle"):
                claim.settle(spent=spent, seen=answer if spent else None)

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
        account = self._account(seen)
        if account is not None:  # every process on this quota waits, not only this one
            with _bookkeeping("exhausted"):
                account.exhausted(wait)
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
