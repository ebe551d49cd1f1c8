"""The shared quota ledger: what every mirror process may still pull from one upstream
quota, so that two processes never spend the same remaining pull.

One item per quota: pk "quota", sk "<registry>|<counted as>", where "counted as" is what
the upstream counts: the egress address or account Docker Hub names in
`docker-ratelimit-source`, else the credential. Its fields:

- `remaining`: pulls any process may still take;
- `pending`: pulls taken whose GET has not finished (under way somewhere);
- `total`: what the upstream's own figure should be, as far as the ledger knows
  (`remaining + pending`: a pull under way is not counted upstream yet);
- `changed_at`: when a pull was last taken or finished;
- `limit`, `window_seconds`, `observed_at`: the upstream's figures, and when last read;
- `blocked_until`: a 429 said the quota is spent until then;
- `claims_until`: the latest any pending pull may still be in flight.

A process takes a pull with a conditional decrement (`remaining > reserve`, not
blocked) before its GET, so what one took no other can. The upstream's figure R (on every
HEAD and GET answer) only ever lowers the ledger: when R is below `total`, someone
outside the ledger pulled (another client behind the same address), and `total` becomes
R, `remaining` R less the pulls pending. The one exception: when nothing is pending and
nothing was taken or finished for QUIET_SECONDS, R is taken as it is, which is how pulls
that aged out of the window come back. An answer can arrive after a later pull was
counted (answers cross on the wire), so a figure that would raise `remaining` while pulls
come and go is never trusted.
A process that dies mid-GET leaves its pull pending, which only ever keeps `remaining`
low; once `claims_until` has passed, the next refusal clears it.

Times are epoch seconds: processes on different hosts compare them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mirror.coordination.table import Table
from mirror.oci.throttle import RateLimit

__all__ = ["LedgerRefusal", "QuotaLedger", "SharedQuota"]

PK = "quota"
# Longer than a manifest GET may take (its metadata deadline is 30 s by default, at most
# a few minutes): a claim older than this belongs to a process that died.
CLAIM_SECONDS = 600.0
# An unchanged figure from a HEAD is written again at most this often: a no-op pass of
# thousands of images sends thousands of HEADs, and the ledger needs a few of them.
OBSERVE_SECONDS = 10.0
# How long the ledger must have been still before the upstream's figure may raise it:
# far longer than an answer takes to arrive once the registry has counted what it says.
QUIET_SECONDS = 5.0
_FIELDS = (
    "remaining",
    "pending",
    "total",
    "changed_at",
    "limit",
    "window_seconds",
    "observed_at",
    "blocked_until",
    "claims_until",
)


@dataclass(frozen=True)
class LedgerRefusal:
    """Why the ledger gave no pull: what is left for everyone, and for how long a 429
    blocks it (0 when it does not)."""

    remaining: int
    limit: int
    window_seconds: float
    blocked_for: float

    @property
    def reason(self) -> str:
        if self.blocked_for > 0:
            return f"another mirror process was told 429 (blocked {self.blocked_for:.0f}s more)"
        return f"{self.remaining} of {self.limit} pulls left for all mirror processes"


class SharedQuota:
    """One quota in the ledger, as one process spends from it (thread-safe)."""

    def __init__(
        self, table: Table, registry: str, counted_as: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._table = table
        self.key = f"{registry}|{counted_as}"
        self._clock = clock
        self._lock = threading.Lock()
        self._written: tuple[int, float] | None = None  # (remaining, when) last observed

    def observe(self, seen: RateLimit) -> None:
        """An answer's figures, as they arrive: written when they changed, or now and then."""
        now = self._clock()
        with self._lock:
            last = self._written
            if last is not None and last[0] == seen.remaining and now - last[1] < OBSERVE_SECONDS:
                return
            self._written = (seen.remaining, now)
        self._record(seen, now)

    def take(self, reserve: int) -> LedgerRefusal | None:
        """Claim one pull for a GET about to be sent; the refusal when none is left above
        `reserve` for everyone, or a 429 blocks the quota. No item yet (no figures
        shared): nothing to refuse, the process's own budget decides."""
        now = self._clock()
        taken = self._table.update(
            PK,
            self.key,
            "SET #remaining = #remaining - :one, #pending = #pending + :one, "
            "#claims_until = :until, #changed_at = :now",
            {":one": 1, ":reserve": reserve, ":now": now, ":until": now + CLAIM_SECONDS},
            *_FIELDS,
            condition="#remaining > :reserve AND #blocked_until < :now",
        )
        if taken is not None:
            return None
        item = self._table.get(PK, self.key)
        if item is None:
            return None
        if item.get("pending", 0) > 0 and item.get("claims_until", 0) < now:
            self._table.update(  # the claims of a process that died mid-GET
                PK,
                self.key,
                "SET #pending = :zero, #total = #remaining",
                {":zero": 0, ":now": now},
                *_FIELDS,
                condition="#claims_until < :now",
            )
        return LedgerRefusal(
            remaining=int(item.get("remaining", 0)),
            limit=int(item.get("limit", 0)),
            window_seconds=float(item.get("window_seconds", 0.0)),
            blocked_for=max(0.0, float(item.get("blocked_until", 0.0)) - now),
        )

    def settle(self, *, spent: bool, seen: RateLimit | None) -> None:
        """The claimed GET finished. Not served (a 429, a failure before the registry
        counted it), the pull is given back; served, `seen` (its own answer's figures)
        may lower what is left."""
        now = self._clock()
        # served: counted upstream now; not served: free again
        counted = ", #total = #total - :one" if spent else ", #remaining = #remaining + :one"
        self._table.update(
            PK,
            self.key,
            f"SET #pending = #pending - :one, #changed_at = :now{counted}",
            {":one": 1, ":zero": 0, ":now": now},
            *_FIELDS,
            condition="#pending > :zero",
        )
        if spent and seen is not None:
            self._record(seen, now)

    def exhausted(self, blocked_for: float) -> None:
        """A 429 TOOMANYREQUESTS: the quota is spent for every process, for this long."""
        now = self._clock()
        until = now + blocked_for
        done = self._table.update(
            PK,
            self.key,
            "SET #remaining = :zero, #total = #pending, #blocked_until = :until, "
            "#changed_at = :now",
            {":zero": 0, ":until": until, ":now": now},
            *_FIELDS,
            condition="attribute_exists(#pending)",
        )
        if done is None:
            self._create(RateLimit(0, 0, 0.0), now, blocked_until=until)

    def _record(self, seen: RateLimit, at: float) -> None:
        """The upstream's figure, where it is below what the ledger thinks it is, or where
        the ledger has been quiet long enough to trust a rise."""
        done = self._table.update(
            PK,
            self.key,
            "SET #total = :r, #remaining = :r - #pending, #limit = :limit, "
            "#window_seconds = :window, #observed_at = :at",
            {
                ":r": seen.remaining,
                ":limit": seen.limit,
                ":window": seen.window,
                ":at": at,
                ":zero": 0,
                ":quiet": at - QUIET_SECONDS,
            },
            *_FIELDS,
            condition="#total > :r OR (#pending = :zero AND #changed_at < :quiet)",
        )
        if done is None and self._table.get(PK, self.key) is None:
            self._create(seen, at)

    def _create(self, seen: RateLimit, at: float, *, blocked_until: float = 0.0) -> None:
        """The quota's first item; a process that wrote one first wins."""
        self._table.put(
            {
                "pk": PK,
                "sk": self.key,
                "remaining": seen.remaining,
                "pending": 0,
                "total": seen.remaining,
                "limit": seen.limit,
                "window_seconds": seen.window,
                "observed_at": at,
                "changed_at": 0,
                "blocked_until": blocked_until,
                "claims_until": 0,
            },
            "attribute_not_exists(sk)",
            {},
        )


class QuotaLedger:
    """The ledger's quotas, one SharedQuota per (registry, counted as), built once."""

    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._lock = threading.Lock()
        self._quotas: dict[str, SharedQuota] = {}

    def quota(self, registry: str, counted_as: str) -> SharedQuota:
        key = f"{registry}|{counted_as}"
        with self._lock:
            if key not in self._quotas:
                self._quotas[key] = SharedQuota(self._table, registry, counted_as, self._clock)
            return self._quotas[key]
