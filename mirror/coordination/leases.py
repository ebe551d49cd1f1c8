"""Leases on work, in the coordination table: a target repository is copied into by one
mirror process at a time, and the chores done once for all (publishing the include,
replication set-up, prune) by one leader.

A lease is an item (pk "lease", sk its name) with its owner and `expires_at`. It is taken
by a conditional write that succeeds when nobody holds it, its holder's time has run out,
or this process holds it already; a thread renews every lease the process holds every
third of the TTL. A process that dies stops renewing, and after the TTL another takes
over. Within a process a lease is counted: four images of one repository copying at once
hold it once, and it is released when the last of them ends.

Times are epoch seconds: processes on different hosts compare them (clocks kept by NTP
differ by milliseconds; the TTL is a minute).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mirror.coordination.table import Table
from mirror.errors import CoordinationError

__all__ = ["Holder", "Leases"]

log = structlog.get_logger(__name__)
PK = "lease"
RENEWALS_PER_TTL = 3


@dataclass(frozen=True)
class Holder:
    """Who holds a lease this process wanted, and for how long at most without renewing."""

    owner: str
    expires_in: float


class Leases:
    def __init__(
        self,
        table: Table,
        owner: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.owner = owner
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # name -> holders in this process
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def take(self, name: str) -> Holder | None:
        """Hold `name`: None when this process holds it now, else who does."""
        with self._lock:
            if name in self._held:
                self._held[name] += 1
                return None
        now = self._clock()
        refused = self._table.put(
            {
                "pk": PK,
                "sk": name,
                "owner": self.owner,
                "taken_at": now,
                "expires_at": now + self.ttl,
            },
            "attribute_not_exists(sk) OR #expires_at < :now OR #owner = :me",
            {":now": now, ":me": self.owner},
            "expires_at",
            "owner",
        )
        if refused is not None:
            return Holder(
                str(refused.get("owner", "another mirror process"))[:200],
                max(0.0, float(refused.get("expires_at", now)) - now),
            )
        with self._lock:
            self._held[name] = self._held.get(name, 0) + 1
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="lease-renewer", daemon=True
                )
                self._renewer.start()
        return None

    def held(self, name: str) -> bool:
        with self._lock:
            return name in self._held

    def release(self, name: str) -> None:
        """One holder is done with `name`; the last one gives the lease up."""
        with self._lock:
            count = self._held.get(name, 0) - 1
            if count > 0:
                self._held[name] = count
                return
            if name not in self._held:
                return
            del self._held[name]
        self._give_up(name)

    def _give_up(self, name: str) -> None:
        try:
            self._table.delete(PK, name, "#owner = :me", {":me": self.owner}, "owner")
        except CoordinationError as exc:  # it expires on its own within the TTL
            log.warning("lease_not_released", lease=name, error=str(exc))

    def renew(self) -> None:
        """Push every held lease's expiry a TTL ahead. One another process took (this
        one could not renew it for a whole TTL) is dropped, and said so."""
        with self._lock:
            names = list(self._held)
        now = self._clock()
        for name in names:
            try:
                kept = self._table.update(
                    PK,
                    name,
                    "SET #expires_at = :until",
                    {":until": now + self.ttl, ":me": self.owner},
                    "expires_at",
                    "owner",
                    condition="#owner = :me",
                )
            except CoordinationError as exc:  # DynamoDB unreachable: try again next time
                log.warning("lease_not_renewed", lease=name, error=str(exc))
                continue
            if kept is None:
                with self._lock:
                    self._held.pop(name, None)
                log.warning("lease_lost", lease=name, owner=self.owner)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / RENEWALS_PER_TTL):
            self.renew()

    def close(self) -> None:
        """Stop renewing and give up every lease held (a crash leaves them to expire)."""
        self._stop.set()
        with self._lock:
            names, self._held = list(self._held), {}
        for name in names:
            self._give_up(name)
