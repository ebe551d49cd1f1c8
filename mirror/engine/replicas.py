"""Replicas made complete: what ECR's replication never copied, mirror copies.

ECR replicates only what is pushed after a replication rule exists, and mirror pushes
nothing for an image that did not change. Without this step a Region added to
`replicate_to` would stay empty, and every build there would fall back to the primary.
After each pass, every image that was already in the primary (skipped) is looked up in
each replica in this account, by digest (a HEAD: no upstream request, no pull quota),
and what a replica lacks is copied there from the primary, digest for digest, as
replication would have. An image copied in this pass is left to ECR's replication,
which the push has just started. A replica in another account is filled by ECR alone:
mirror has no right to write there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import structlog

from mirror.aws.ecr import Ecr
from mirror.engine.blobs import BlobCopier
from mirror.engine.copy import CopyJob, ImageCopier
from mirror.engine.quota import Budget
from mirror.engine.report import Action, ErrorInfo, ImageResult
from mirror.engine.upstream import Member, Upstream
from mirror.oci.client import RegistryClient
from mirror.oci.reference import Reference, parse_reference
from mirror.oci.retry import RetryPolicy
from mirror.threads import ContextPool

__all__ = ["ReplicaTarget", "complete_replicas"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReplicaTarget:
    """One replica Region of the mirror, in the primary's account."""

    region: str
    host: str
    client: RegistryClient
    ecr: Ecr


@dataclass
class ReplicaFill:
    replica: str  # the replica's registry host
    image: str  # the reference in the primary
    digest: str
    error: ErrorInfo | None = None


def _fill(
    result: ImageResult,
    replica: ReplicaTarget,
    primary: Upstream,
    blobs: BlobCopier,
) -> ReplicaFill | None:
    """Copy `result`'s image from the primary to `replica` when the replica lacks it."""
    assert result.target_digest is not None
    held = parse_reference(result.target)
    digest = result.target_digest
    try:
        if replica.client.head_manifest(held.repository, digest) is not None:
            return None
        job = CopyJob(
            Reference(primary.registry, held.repository, held.tag),
            Reference(replica.host, held.repository, held.tag),
        )
        copier = ImageCopier(replica.client, blobs, prepare=replica.ecr.ensure_repository)
        copied = ImageResult(str(job.source), str(job.target))
        copier.copy(job, primary, copied, None)
    except Exception as exc:  # one replica's failure is reported, never the pass's end
        error = ErrorInfo.from_exception(exc)
        log.error("replica_not_filled", replica=replica.host, image=result.target, error=error)
        return ReplicaFill(replica.host, result.target, digest, error)
    log.info("replica_filled", replica=replica.host, image=result.target, digest=digest)
    return ReplicaFill(replica.host, result.target, digest)


def complete_replicas(
    results: list[ImageResult],
    primary_client: RegistryClient,
    primary_host: str,
    replicas: list[ReplicaTarget],
    retry: RetryPolicy,
    workers: int,
) -> list[ReplicaFill]:
    """Every image already in the primary, made present in every replica."""
    current = [r for r in results if r.action is Action.SKIPPED and r.target_digest and r.target]
    if not current or not replicas:
        return []
    primary = Upstream(primary_host, [Member(primary_client, Budget(primary_host, "mirror"))])
    fills: list[ReplicaFill] = []
    for replica in replicas:
        blobs = BlobCopier(replica.client, retry, workers)
        try:
            with ContextPool(workers) as pool:
                fill = functools.partial(_fill, replica=replica, primary=primary, blobs=blobs)
                found = pool.map(fill, current)
                fills += [fill for fill in found if fill is not None]
        finally:
            blobs.close()
    return fills
