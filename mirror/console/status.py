"""`mirror status`: the coordination table, read and shown (mirror/coordination/status.py)."""

from __future__ import annotations

import argparse
import json
import time

from mirror.config import Config
from mirror.console.exits import EXIT_OK, EXIT_USAGE, fail
from mirror.coordination.status import Status, read_status
from mirror.coordination.table import open_table
from mirror.engine.wiring import COORDINATION_TABLE_ENV, config_region, coordination_settings
from mirror.files import say

__all__ = ["status"]


def status(config: Config, args: argparse.Namespace) -> int:
    settings = coordination_settings(config)
    if settings is None:
        fail(
            "this config has no coordination table: mirror runs as one process "
            "(add coordination: {dynamodb_table: NAME} to share one between several, or "
            f"set {COORDINATION_TABLE_ENV})"
        )
        return EXIT_USAGE
    found = read_status(open_table(settings.dynamodb_table, config_region(config)))
    if args.log_format == "json":
        say(json.dumps(found.to_json(), indent=2))
    else:
        say(render(found))
    return EXIT_OK


def _ago(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s ago"


def render(found: Status) -> str:
    lines = [f"coordination table {found.table}"]
    leader = found.leader
    if leader is None or leader.expires_in <= 0:
        lines.append("leader: none (the next daemon pass takes it)")
    else:
        lines.append(f"leader: {leader.owner} (lease {leader.expires_in:.0f}s more)")
    lines.append(f"\nleases ({len(found.leases)})")
    for lease in found.leases:
        state = f"{lease.expires_in:.0f}s more" if lease.expires_in > 0 else "expired"
        lines.append(f"  {lease.name:<60} {lease.owner}  {state}")
    lines.append(f"\nquotas ({len(found.quotas)})")
    for quota in found.quotas:
        left = "-" if quota.remaining is None else str(quota.remaining)
        limit = "-" if quota.limit is None else str(quota.limit)
        extra = f", blocked {quota.blocked_for:.0f}s more" if quota.blocked_for else ""
        lines.append(
            f"  {quota.quota:<50} {left}/{limit} left, {quota.pending} in flight, "
            f"read {_ago(quota.observed_ago)}{extra}"
        )
    lines.append(f"\nprocesses ({len(found.tasks)})")
    for task in found.tasks:
        last = task.last_pass
        done = (
            f"last pass {_ago(time.time() - last['finished_at'])}: "
            f"{last.get('copied', 0):.0f} copied, {last.get('skipped', 0):.0f} skipped, "
            f"{last.get('failed', 0):.0f} failed, {last.get('deferred', 0):.0f} deferred"
            if "finished_at" in last
            else "no pass finished yet"
        )
        lines.append(f"  {task.identity:<50} seen {_ago(task.seen_ago)}; {done}")
    if found.added:
        lines.append(f"\non demand ({len(found.added)}): images builds asked for")
        for added in found.added:
            by = added.project or added.account or added.sender
            lines.append(
                f"  {added.image:<50} asked {added.requests}x, first by {by}, "
                f"{_ago(time.time() - added.added_at)}"
            )
    return "\n".join(lines)
