"""`mirror prune`: retire what the config no longer mirrors, never what a workload uses.

The plan comes first and is always printed; deletion happens only with `--apply` (or in
the daemon with prune.enabled), by digest, indexes before their children, in batches.

May import: mirror.engine, mirror.aws, mirror.config, mirror.oci and the shared leaves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mirror.aws.ecr import AwsError, call_aws
from mirror.aws.ptc import ptc_prefix
from mirror.config import Config
from mirror.config.lifecycle import can_archive
from mirror.config.source import config_base_dir
from mirror.engine.naming import target_repository
from mirror.engine.report import PassReport
from mirror.engine.sync import pull_through_cached, resolve_jobs
from mirror.engine.wiring import Clients
from mirror.oci.reference import parse_reference
from mirror.prune.inuse import PruneAborted, Use, collect_uses
from mirror.prune.plan import Decision, Scope, build_plan
from mirror.prune.restore import restore_pinned

__all__ = ["PruneAborted", "PruneReport", "restore_after_pass", "run_prune"]

BATCH_DELETE_MAX = 100


@dataclass
class PruneReport:
    applied: bool
    decisions: list[Decision] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def to_delete(self) -> list[Decision]:
        return [d for d in self.decisions if d.delete]

    @property
    def failed(self) -> list[Decision]:
        return [d for d in self.to_delete if d.result not in (None, "deleted")]

    @property
    def deleted(self) -> int:
        return sum(1 for d in self.to_delete if d.result == "deleted")

    @property
    def kept(self) -> int:
        return len(self.decisions) - len(self.to_delete)

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "seconds": round(self.seconds, 3),
            "summary": {
                "delete": len(self.to_delete),
                "keep": self.kept,
                "failed": len(self.failed),
            },
            "images": [d.to_json() for d in self.decisions],
        }


def _cached_prefixes(config: Config, prefix: str) -> tuple[str, ...]:
    return tuple(
        ptc_prefix(prefix, host)
        for host in config.model.registries
        if pull_through_cached(config, host)
    )


def _uses(config: Config, clients: Clients) -> list[Use]:
    """What workloads and `prune.protect` pin (prune's default scope without a prune
    section); PruneAborted when that cannot be listed in full."""
    import boto3

    from mirror.config.model import PruneSettings

    assert clients.ecr is not None, "needs target kind: ecr (checked with the config)"
    settings = config.model.prune or PruneSettings()
    session = boto3.session.Session(region_name=clients.ecr.client.meta.region_name)
    return collect_uses(
        settings,
        ecs=session.client("ecs"),
        lambda_client=session.client("lambda"),
        base_dir=config_base_dir(config.source),
        registry=clients.target_registry,
    )


def restore_after_pass(config: Config, clients: Clients, report: PassReport) -> None:
    """After a sync or a daemon pass into ECR under a lifecycle policy that archives:
    every archived image that something pins is restored (`report.restored`); what
    could not be checked or restored joins the pass's errors (exit 1)."""
    if clients.ecr is None or report.command != "sync" or not can_archive(config.lifecycle_policy):
        return
    prefix = config.model.target.repository_prefix.strip("/")
    repositories = {
        parse_reference(r.target).repository for r in report.images if r.target and r.error is None
    }
    scope = Scope(
        clients.target_registry, prefix, {}, skipped_prefixes=_cached_prefixes(config, prefix)
    )
    restored, errors = restore_pinned(
        clients.ecr.client, scope, repositories, lambda: _uses(config, clients)
    )
    report.restored += [asdict(r) for r in restored]
    report.errors += errors


def _scope(config: Config, clients: Clients) -> Scope:
    prefix = config.model.target.repository_prefix.strip("/")
    resolved = resolve_jobs(config, clients)
    jobs, failures = resolved.jobs, resolved.failures
    wanted: dict[str, set[str]] = {}
    for job in jobs:
        wanted.setdefault(job.target.repository, set()).add(job.target.identifier)
    errors = {f.source: f.error.message for f in failures if f.error is not None}
    unresolved: dict[str, str] = {}
    for entry in config.images:
        repository = target_repository(entry.source, prefix)
        wanted.setdefault(repository, set())
        if entry.describe() in errors:
            unresolved[repository] = errors[entry.describe()]
    cached = _cached_prefixes(config, prefix)
    listed = config.model.prune.repositories if config.model.prune else None
    return Scope(
        clients.target_registry,
        prefix,
        wanted,
        unresolved,
        cached,
        frozenset(listed) if listed is not None else None,
    )


def _delete(ecr: Any, decisions: list[Decision]) -> None:
    """Indexes first: ECR refuses to delete an image an index still refers to."""
    by_repository: dict[str, list[Decision]] = {}
    for decision in sorted(decisions, key=lambda d: not d.is_index):
        by_repository.setdefault(decision.repository, []).append(decision)
    for repository, doomed in by_repository.items():
        for start in range(0, len(doomed), BATCH_DELETE_MAX):
            batch = {d.digest: d for d in doomed[start : start + BATCH_DELETE_MAX]}
            ids = [{"imageDigest": digest} for digest in batch]
            try:
                answer = call_aws(
                    ecr, "batch_delete_image", repositoryName=repository, imageIds=ids
                )
            except AwsError as exc:
                for decision in batch.values():
                    decision.result = f"failed: {exc}"
                continue
            for image_id in answer.get("imageIds", []):
                if image_id.get("imageDigest") in batch:
                    batch[image_id["imageDigest"]].result = "deleted"
            for failure in answer.get("failures", []):
                digest = failure.get("imageId", {}).get("imageDigest")
                if digest in batch:
                    code, reason = failure.get("failureCode"), failure.get("failureReason")
                    batch[digest].result = f"failed: {code}: {reason}"
            for decision in batch.values():
                if decision.result is None:
                    decision.result = "deleted"  # already gone: ECR answered nothing for it


def run_prune(
    config: Config, clients: Clients, *, apply: bool, keep_days: int | None = None
) -> PruneReport:
    """Plan (and with `apply`, carry out) a prune; PruneAborted if what is in use, or the
    mirror's own images, cannot be listed in full."""
    from mirror.config.model import PruneSettings

    started = time.monotonic()
    settings = config.model.prune or PruneSettings()
    assert clients.ecr is not None, "prune needs target kind: ecr (checked with the config)"
    uses = _uses(config, clients)
    days = settings.keep_days if keep_days is None else keep_days
    scope = _scope(config, clients)
    decisions = build_plan(clients.ecr.client, scope, uses, days, datetime.now(UTC))
    report = PruneReport(applied=apply, decisions=decisions)
    if apply and report.to_delete:
        _delete(clients.ecr.client, report.to_delete)
    report.seconds = time.monotonic() - started
    return report
