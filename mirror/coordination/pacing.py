"""One registry's request rate, shared by every mirror process: at most `rate` requests a
second in all, HEADs included (Docker Hub's abuse limit counts every request from an
address, whichever process sends it).

Time is cut into windows of one second of the epoch (longer for a rate under one a
second). A process takes its requests from the current window's item (pk "pace", sk
"<registry>|<window>") in blocks, with a conditional ADD that succeeds while the window
has room for the block; a process that finds no room waits for the next window. So the
requests sent in any window never exceed its share, whatever the number of processes,
at the cost of one write per block (a quarter of the rate), not one per request. A block
left unused when its window ends is given up, never carried over, and no request starts
in a window's last GUARD_SECONDS: sent just before the boundary, it could arrive in the
next window, and be counted there with that window's own share. For the same reason a
block whose grant arrives after its window ended is never spent.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from mirror.coordination.table import Table

__all__ = ["SharedRate"]

PK = "pace"
BLOCKS_PER_WINDOW = 4
GUARD_SECONDS = 0.025
KEEP_WINDOWS_SECONDS = 3600.0  # how long DynamoDB's TTL may leave a spent window


class SharedRate:
    """`take()` before each request to the registry (thread-safe: it blocks the caller
    until the request may go)."""

    def __init__(
        self,
        table: Table,
        registry: str,
        rate: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self.registry = registry
        self.window = max(1, math.ceil(1.0 / rate))  # seconds
        self.cap = max(1, math.floor(rate * self.window))  # requests a window, in all
        self.block = max(1, self.cap // BLOCKS_PER_WINDOW)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._current: int | None = None  # the window our block belongs to
        self._left = 0

    def take(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                window = int(now // self.window)
                left = (window + 1) * self.window - now
                if left < GUARD_SECONDS:
                    self._sleep(left)
                    continue
                if window == self._current and self._left > 0:
                    self._left -= 1
                    return
                taken = self._take_block(window)
                if taken:
                    # read the clock again: the table's answer may come after the window
                    # ended, and a block is only good within its own window
                    self._current, self._left = window, taken
                    continue
                self._sleep(max(0.001, (window + 1) * self.window - now))

    def _take_block(self, window: int) -> int:
        """Requests claimed in `window`: a block, or what room is left, or none."""
        for size in dict.fromkeys((self.block, 1)):
            granted = self._table.update(
                PK,
                f"{self.registry}|{window}",
                "ADD #used :size SET #expires_at = :expires",
                {
                    ":size": size,
                    ":room": self.cap - size,
                    ":expires": (window + 1) * self.window + KEEP_WINDOWS_SECONDS,
                },
                "used",
                "expires_at",
                condition="attribute_not_exists(#used) OR #used <= :room",
            )
            if granted is not None:
                return size
        return 0
