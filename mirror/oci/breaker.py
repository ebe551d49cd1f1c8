"""A circuit breaker per registry: while it refuses connections, wait for it, not on it.

Without one a dead target (or upstream) costs every blob its full retry schedule, one after
another, for minutes. After `threshold` connection failures in a row, with no answer in
between, the breaker opens: requests wait instead of being sent. After a short pause it
half-opens and lets one request through, the probe: an answer closes it and everything
waiting goes on, so a registry that was away for two seconds (a restart, a failover)
costs the pass two seconds, not its images. A refused probe opens it again for twice the
pause. Once the registry has been away for `give_up` seconds, every request fails at once
with UnavailableError, which is not retried: the images still waiting fail within
seconds, a one-shot sync exits 1, and the daemon tries again after a short back-off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from mirror.errors import UnavailableError
from mirror.oci.limits import check_deadline

__all__ = ["CONNECTION_FAILURES", "Breaker"]

# What "refuses connections" means: nothing answered at all.
CONNECTION_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)
WAIT_SLICE_SECONDS = 0.25  # how often a waiting request looks at its own deadline


class Breaker:
    def __init__(
        self,
        name: str,
        code: str,
        threshold: int = 3,
        *,
        pause: float = 1.0,
        max_pause: float = 8.0,
        give_up: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`code` is what the images fail with: TARGET_UNAVAILABLE or UPSTREAM_UNAVAILABLE."""
        self._name = name
        self._code = code
        self._threshold = threshold
        self._first_pause = pause
        self._max_pause = max_pause
        self._give_up = give_up
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None  # when this outage began
        self._pause = pause
        self._probe_at = 0.0
        self._probing = False
        self._prober = 0  # the thread sending the probe
        self._changed = threading.Condition()

    @property
    def open(self) -> bool:
        with self._changed:
            return self._failures >= self._threshold

    def _dead(self, now: float) -> bool:
        return self._opened_at is not None and now - self._opened_at >= self._give_up

    def check(self) -> None:
        """Before a request: go on while closed; while open, wait for the pause to end and
        go as the probe, or for another request's probe to be answered. Raise
        UnavailableError once the registry has been away for `give_up` seconds."""
        with self._changed:
            while self._failures >= self._threshold:
                now = self._clock()
                if self._dead(now):
                    raise UnavailableError(
                        f"{self._name} refused every connection for "
                        f"{now - (self._opened_at or now):.0f} s; not asked again in this pass",
                        code=self._code,
                        hint="check that the registry is up and reachable (raise "
                        "timeouts.unreachable if its restarts take longer); the daemon "
                        "tries again after a short back-off",
                    )
                if not self._probing and now >= self._probe_at:
                    self._probing, self._prober = True, threading.get_ident()
                    return
                check_deadline()  # an image's deadline still holds while it waits
                wait = self._probe_at - now if not self._probing else WAIT_SLICE_SECONDS
                self._changed.wait(min(max(wait, 0.01), WAIT_SLICE_SECONDS))

    def failed(self) -> None:
        """A request found nobody there (a refused or timed-out connection)."""
        with self._changed:
            now = self._clock()
            self._failures += 1
            if self._failures < self._threshold:
                return
            if self._opened_at is None:
                self._opened_at = now
                self._pause = self._first_pause
            elif self._probing and self._prober == threading.get_ident():
                self._pause = min(self._max_pause, self._pause * 2)
                self._probing = False
            else:
                return  # a request sent before it opened: the probe decides
            self._probe_at = now + self._pause
            self._changed.notify_all()

    def answered(self) -> None:
        """Something answered: the registry is there, whatever it said."""
        with self._changed:
            self._failures = 0
            self._opened_at = None
            self._probing = False
            self._changed.notify_all()
