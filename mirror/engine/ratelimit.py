"""`mirror ratelimit`: each upstream's quota as its own headers state it, spending nothing.

One HEAD per credential on an image the config names (Docker Hub does not count a HEAD),
read through the same Budget that a sync uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from mirror.config import Config, ImageEntry
from mirror.engine.wiring import Clients
from mirror.errors import MirrorError

__all__ = ["QuotaRow", "probe_rate_limits"]


@dataclass(frozen=True)
class QuotaRow:
    registry: str
    credential: str
    limit: int | None = None
    remaining: int | None = None
    window_seconds: float | None = None
    source: str = ""
    error: str = ""


def _probe_reference(entry: ImageEntry, clients: Clients) -> str:
    if entry.source.tag or entry.source.digest:
        return entry.source.identifier
    if entry.tags:
        return entry.tags[0]
    tags = clients.upstream(entry.source.registry).list_tags(entry.source.repository).tags
    return tags[0] if tags else "latest"


def probe_rate_limits(config: Config, clients: Clients) -> list[QuotaRow]:
    first_entry: dict[str, ImageEntry] = {}
    for entry in config.images:
        first_entry.setdefault(entry.source.registry, entry)
    rows = []
    for registry, entry in first_entry.items():
        upstream = clients.upstream(registry)
        for member in upstream.members:
            try:
                reference = _probe_reference(entry, clients)
                member.client.head_manifest(entry.source.repository, reference)
            except (MirrorError, httpx.HTTPError) as exc:
                rows.append(QuotaRow(registry, member.budget.label, error=str(exc)))
                continue
            seen = member.budget.last_seen
            if seen is None:
                rows.append(QuotaRow(registry, member.budget.label))
            else:
                rows.append(
                    QuotaRow(
                        registry,
                        member.budget.label,
                        seen.limit,
                        seen.remaining,
                        seen.window,
                        seen.source,
                    )
                )
    return rows
