"""A circuit breaker per registry: once it refuses connections again and again, stop asking.

Without it a dead target (or upstream) costs every blob its full retry schedule, one after
another, for minutes. After `threshold` connection failures in a row, with no answer in
between, every request to that registry fails at once with UnavailableError, which is not
retried: the images still waiting fail within seconds and a one-shot sync exits 1. Any
answer at all (even an error status) closes the breaker again. The daemon builds new
clients each pass, so its next pass tries the registry afresh.
"""

from __future__ import annotations

import threading

import httpx

from mirror.errors import UnavailableError

__all__ = ["CONNECTION_FAILURES", "Breaker"]

# What "refuses connections" means: nothing answered at all.
CONNECTION_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)


class Breaker:
    def __init__(self, name: str, code: str, threshold: int = 3) -> None:
        """`code` is what the images fail with: TARGET_UNAVAILABLE or UPSTREAM_UNAVAILABLE."""
        self._name = name
        self._code = code
        self._threshold = threshold
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self._lock:
            return self._failures >= self._threshold

    def check(self) -> None:
        """Raise UnavailableError instead of sending a request, while open."""
        if self.open:
            raise UnavailableError(
                f"{self._name} refused {self._threshold} connections in a row; not asked again "
                "in this pass",
                code=self._code,
                hint="check that the registry is up and reachable; the daemon tries again at "
                "its next pass",
            )

    def failed(self) -> None:
        with self._lock:
            self._failures += 1

    def answered(self) -> None:
        with self._lock:
            self._failures = 0
