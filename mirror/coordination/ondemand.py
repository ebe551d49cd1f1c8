"""The images builds asked for and a daemon added (`on_demand`), in the coordination
table, with the daily caps on adding them counted across every daemon.

- pk "on-demand", sk the image (`registry/repository:tag` or `@digest`): who asked first
  (the project and account the build named, the sender SQS named), when, and how many
  requests for it have come since.
- pk "on-demand-day", sk "<YYYY-MM-DD>" and "<YYYY-MM-DD>|<sender>": images added that
  day (UTC) in all and by that sender. The counters and the image are written in one
  transaction, each counter under its cap, so no number of daemons adds more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mirror.coordination.table import Step, Table
from mirror.errors import printable

__all__ = ["AddedImage", "OnDemandImages", "Outcome"]

PK = "on-demand"
DAY_PK = "on-demand-day"
DAY_COUNTER_SECONDS = 3 * 86400.0  # how long a day's counters outlive it (TTL)
FAILED = "ConditionalCheckFailed"


class Outcome(StrEnum):
    ADDED = "added"
    KNOWN = "known"  # added before: nothing counted
    DAY_CAP = "day_cap"
    SENDER_CAP = "sender_cap"


@dataclass(frozen=True)
class AddedImage:
    image: str
    added_at: float
    project: str
    account: str
    sender: str
    requests: int


class OnDemandImages:
    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._refusals_spent_on = ""  # the UTC day whose refusals are all written

    def add(
        self,
        image: str,
        *,
        sender: str,
        project: str = "",
        account: str = "",
        max_per_day: int,
        max_per_sender: int,
    ) -> Outcome:
        """Add `image` unless it is there, or a cap of the day would be passed."""
        now = self._clock()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        counter = "ADD #count :one SET #expires_at = :expires"
        values = {":one": 1, ":expires": now + DAY_COUNTER_SECONDS}
        refused = self._table.transact(
            Step(
                item={
                    "pk": PK,
                    "sk": image,
                    "added_at": now,
                    "project": project,
                    "account": account,
                    "sender": sender,
                    "requests": 1,
                },
                condition="attribute_not_exists(sk)",
            ),
            Step(
                DAY_PK,
                day,
                counter,
                {**values, ":cap": max_per_day},
                ("count", "expires_at"),
                condition="attribute_not_exists(#count) OR #count < :cap",
            ),
            Step(
                DAY_PK,
                f"{day}|{sender}",
                counter,
                {**values, ":cap": max_per_sender},
                ("count", "expires_at"),
                condition="attribute_not_exists(#count) OR #count < :cap",
            ),
        )
        if refused is None:
            return Outcome.ADDED
        if refused[0] == FAILED:
            self._table.update(PK, image, "ADD #requests :one", {":one": 1}, "requests")
            return Outcome.KNOWN
        return Outcome.DAY_CAP if len(refused) > 1 and refused[1] == FAILED else Outcome.SENDER_CAP

    def may_refuse(self, max_per_day: int) -> bool:
        """Whether one more refusal may be written to the target today (forged reports
        must not fill it with refusal manifests). Once the day's are spent, the rest of
        the day asks the table no more: a flood costs no write per report."""
        now = self._clock()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        if self._refusals_spent_on == day:
            return False
        counted = self._table.update(
            DAY_PK,
            f"{day}|refusals",
            "ADD #count :one SET #expires_at = :expires",
            {":one": 1, ":cap": max_per_day, ":expires": now + DAY_COUNTER_SECONDS},
            "count",
            "expires_at",
            condition="attribute_not_exists(#count) OR #count < :cap",
        )
        if counted is None:
            self._refusals_spent_on = day
        return counted is not None

    def images(self) -> list[AddedImage]:
        """Every image added, oldest first; what another process wrote is made printable."""
        found = [_added(item) for item in self._table.query(PK)]
        return sorted((a for a in found if a is not None), key=lambda a: a.added_at)


def _added(item: dict[str, Any]) -> AddedImage | None:
    image, added_at = item.get("sk"), item.get("added_at")
    if not isinstance(image, str) or not isinstance(added_at, float):
        return None
    requests = item.get("requests")
    return AddedImage(
        printable(image, limit=300),
        added_at,
        printable(str(item.get("project", "")), limit=255),
        printable(str(item.get("account", "")), limit=12),
        printable(str(item.get("sender", "")), limit=128),
        int(requests) if isinstance(requests, float) else 1,
    )
