"""`mirror status`: what the coordination table says now. Who holds which lease and until
when, each quota's pulls left for everyone, and each mirror process with its last pass.

Every value is read back from the table as something another process (or a person in
the console) wrote: names are made printable and cut short, numbers that are not numbers
are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mirror.coordination import LEADER, TASK_PK
from mirror.coordination.leases import PK as LEASE_PK
from mirror.coordination.ledger import PK as QUOTA_PK
from mirror.coordination.ondemand import AddedImage, OnDemandImages
from mirror.coordination.table import Table
from mirror.errors import printable

__all__ = ["LeaseRow", "QuotaRow", "Status", "TaskRow", "read_status"]

TEXT_LIMIT = 200
PASS_FIELDS = ("finished_at", "seconds", "copied", "skipped", "failed", "deferred")


@dataclass(frozen=True)
class LeaseRow:
    name: str
    owner: str
    expires_in: float  # seconds; <= 0: expired, anyone may take it


@dataclass(frozen=True)
class QuotaRow:
    quota: str  # registry|counted as
    remaining: int | None
    limit: int | None
    pending: int
    window_seconds: float | None
    blocked_for: float
    observed_ago: float | None


@dataclass(frozen=True)
class TaskRow:
    identity: str
    kind: str
    started_at: float | None
    seen_ago: float | None
    last_pass: dict[str, float] = field(default_factory=dict)


@dataclass
class Status:
    table: str
    leader: LeaseRow | None
    leases: list[LeaseRow]
    quotas: list[QuotaRow]
    tasks: list[TaskRow]
    added: list[AddedImage] = field(default_factory=list)  # on_demand: what builds asked for

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "table": self.table,
            "leader": asdict(self.leader) if self.leader else None,
            "leases": [asdict(r) for r in self.leases],
            "quotas": [asdict(r) for r in self.quotas],
            "tasks": [asdict(r) for r in self.tasks],
            "on_demand": [asdict(a) for a in self.added],
        }


def _text(value: Any) -> str:
    return printable(str(value), limit=TEXT_LIMIT)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_status(table: Table, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    leases = []
    for item in table.query(LEASE_PK):
        expires = _number(item.get("expires_at"))
        leases.append(
            LeaseRow(
                _text(item.get("sk", "")),
                _text(item.get("owner", "")),
                round(expires - now, 1) if expires is not None else 0.0,
            )
        )
    quotas = []
    for item in table.query(QUOTA_PK):
        remaining, limit = _number(item.get("remaining")), _number(item.get("limit"))
        observed, blocked = _number(item.get("observed_at")), _number(item.get("blocked_until"))
        quotas.append(
            QuotaRow(
                _text(item.get("sk", "")),
                int(remaining) if remaining is not None else None,
                int(limit) if limit else None,
                int(_number(item.get("pending")) or 0),
                _number(item.get("window_seconds")),
                round(max(0.0, (blocked or 0.0) - now), 1),
                round(now - observed, 1) if observed else None,
            )
        )
    tasks = []
    for item in table.query(TASK_PK):
        seen = _number(item.get("seen_at"))
        last = item.get("last_pass")
        last_pass = {}
        if isinstance(last, dict):
            last_pass = {k: v for k in PASS_FIELDS if (v := _number(last.get(k))) is not None}
        tasks.append(
            TaskRow(
                _text(item.get("sk", "")),
                _text(item.get("kind", "")),
                _number(item.get("started_at")),
                round(now - seen, 1) if seen is not None else None,
                last_pass,
            )
        )
    tasks.sort(key=lambda t: t.seen_ago if t.seen_ago is not None else float("inf"))
    leader = next((lease for lease in leases if lease.name == LEADER), None)
    work = [lease for lease in leases if lease.name != LEADER]
    added = OnDemandImages(table).images()
    return Status(table.name, leader, work, quotas, tasks, added)
