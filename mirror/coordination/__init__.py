"""Several mirror processes on one DynamoDB table (`coordination.dynamodb_table`): a shared
quota ledger, leases on work and on leadership, a shared request rate per registry, and a
record of each process for `mirror status`.

Without `coordination` in the config none of this exists and a process runs alone.

May import: the shared leaves and mirror.oci (rate-limit figures), nothing else.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from mirror.coordination.leases import Holder, Leases
from mirror.coordination.ledger import QuotaLedger
from mirror.coordination.pacing import SharedRate
from mirror.coordination.table import Table, open_table
from mirror.errors import CoordinationError

__all__ = ["LEADER", "Coordinator", "Holder", "repository_lease"]

log = structlog.get_logger(__name__)
LEADER = "leader"  # the lease of the process that publishes, replicates and prunes
TASK_PK = "task"
TASK_RECORD_SECONDS = 7 * 86400.0  # how long a process's record outlives its last pass


def repository_lease(repository: str) -> str:
    """The lease on copying into one target repository."""
    return f"repository:{repository}"


class Coordinator:
    """What one mirror process shares with the others through the table."""

    def __init__(
        self,
        table: Table,
        *,
        kind: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.kind = kind
        self.identity = f"{kind}@{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._clock = clock
        self.ledger = QuotaLedger(table, clock)
        self.leases = Leases(table, self.identity, lease_seconds, clock=clock)
        self._rates: dict[str, SharedRate] = {}
        self._lock = threading.Lock()
        self._started_at = clock()

    @classmethod
    def open(cls, table_name: str, region: str, *, kind: str, lease_seconds: float) -> Coordinator:
        """The table made sure of (created when missing, refused when not mirror's), and
        this process announced in it."""
        coordinator = cls(open_table(table_name, region), kind=kind, lease_seconds=lease_seconds)
        coordinator.announce()
        return coordinator

    def shared_rate(self, registry: str, rate: float) -> SharedRate:
        with self._lock:
            if registry not in self._rates:
                self._rates[registry] = SharedRate(self.table, registry, rate, clock=self._clock)
            return self._rates[registry]

    def lead(self) -> bool:
        """Whether this process is the leader (taking the lease when it is free)."""
        if self.leases.held(LEADER):
            return True
        holder = self.leases.take(LEADER)
        if holder is not None:
            log.debug("not_leader", leader=holder.owner, expires_in=round(holder.expires_in))
        return holder is None

    def announce(self, last_pass: Mapping[str, Any] | None = None) -> None:
        """This process's record: what it is, where, since when, and its last pass."""
        now = self._clock()
        item: dict[str, Any] = {
            "pk": TASK_PK,
            "sk": self.identity,
            "kind": self.kind,
            "started_at": self._started_at,
            "seen_at": now,
            "expires_at": now + TASK_RECORD_SECONDS,
        }
        if last_pass is not None:
            item["last_pass"] = dict(last_pass)
        try:
            self.table.put(item)
        except CoordinationError as exc:  # a status record is no reason to stop copying
            log.warning("task_record_not_written", error=str(exc))

    def close(self) -> None:
        """Give up every lease this process holds (leadership included)."""
        self.leases.close()
