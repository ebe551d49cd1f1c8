"""One pass over the config: resolve tags, copy images concurrently, collect the report.

A failing image is recorded and the others go on; `plan` runs the same pass read-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import structlog

from mirror.blobs import BlobCopier
from mirror.config import Config, ImageEntry
from mirror.copy import CopyJob, ImageCopier
from mirror.errors import MirrorError, SelectionError
from mirror.naming import target_reference
from mirror.report import Action, ErrorInfo, ImageResult, PassReport
from mirror.selection import select_tags
from mirror.wiring import Clients, target_registry_name

__all__ = ["SyncOptions", "resolve_jobs", "run_pass"]

log = structlog.get_logger(__name__)
# One event per image per pass, under its own name so a console run can leave them to
# the per-image lines on stdout.
image_log = structlog.get_logger("mirror.images")

OnResult = Callable[[ImageResult], None]


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False


def _entry_tags(entry: ImageEntry, clients: Clients) -> list[str | None]:
    """The tags an entry stands for; [None] for a single written tag or digest."""
    if entry.tags:
        return list(entry.tags)
    if entry.rule is None:
        return [None]
    upstream = clients.upstream(entry.source.registry)
    available = upstream.list_tags(entry.source.repository)
    chosen = select_tags(
        available,
        semver_range=entry.rule.semver,
        latest=entry.rule.latest,
        regex=entry.rule.regex,
    )
    if not chosen:
        raise SelectionError(
            f"no tag of {entry.source.name} matches {entry.describe()} "
            f"({len(available)} tags upstream)",
            hint="loosen the rule, or check the tags upstream",
        )
    return list(chosen)


def resolve_jobs(config: Config, clients: Clients) -> tuple[list[CopyJob], list[ImageResult]]:
    """Concrete copy jobs, in config order, and a failed result per entry that can't resolve."""
    target_registry = target_registry_name(config)
    prefix = config.model.target.repository_prefix
    jobs: dict[str, CopyJob] = {}
    failures: list[ImageResult] = []
    for entry in config.images:
        try:
            tags = _entry_tags(entry, clients)
        except (MirrorError, httpx.HTTPError) as exc:
            failures.append(
                ImageResult(
                    source=entry.describe(),
                    target="",
                    error=ErrorInfo.from_exception(exc),
                )
            )
            continue
        for tag in tags:
            source = entry.source.with_tag(tag) if tag else entry.source
            target = target_reference(source, target_registry, prefix)
            if str(target) in jobs:
                log.warning("duplicate_image", source=str(source), line=entry.line)
                continue
            jobs[str(target)] = CopyJob(source, target, entry.platforms)
    return list(jobs.values()), failures


def run_pass(
    config: Config,
    clients: Clients,
    options: SyncOptions,
    on_result: OnResult | None = None,
) -> PassReport:
    started = time.monotonic()
    report = PassReport(command="plan" if options.dry_run else "sync")
    try:
        clients.target.ping()
    except (MirrorError, httpx.HTTPError) as exc:
        # Every image would fail after spending upstream pulls: fail them all up front.
        error = ErrorInfo.from_exception(exc)
        for entry in config.images:
            _record(report, ImageResult(entry.describe(), target="", error=error), on_result)
        report.seconds = time.monotonic() - started
        return report
    jobs, failures = resolve_jobs(config, clients)
    for failure in failures:
        _record(report, failure, on_result)
    concurrency = config.model.concurrency
    blobs = BlobCopier(clients.target, clients.retry, workers=concurrency.blobs)
    copier = ImageCopier(clients.target, blobs, dry_run=options.dry_run)
    try:
        with ThreadPoolExecutor(concurrency.images, thread_name_prefix="image") as pool:
            futures = [
                pool.submit(copier.run, job, clients.upstream(job.source.registry)) for job in jobs
            ]
            for future in futures:
                _record(report, future.result(), on_result)
    finally:
        blobs.close()
    report.seconds = time.monotonic() - started
    return report


def _record(report: PassReport, result: ImageResult, on_result: OnResult | None) -> None:
    report.images.append(result)
    fields = result.to_json()
    event = "image_failed" if result.action is Action.FAILED else "image_done"
    (image_log.error if result.action is Action.FAILED else image_log.info)(event, **fields)
    if on_result is not None:
        on_result(result)
