"""Archived images that something still pins come back to ECR's standard storage class.

An archived image answers 404 to a pull. mirror's default lifecycle policy archives an
untagged image once nobody has pulled it for 30 days, but a lock file, a published
include (`prune.protect`), a running ECS task or a Lambda function may still pin that
digest, and the children of a tagged index are untagged in ECR too. After a sync, each
repository it checked is asked for archived images (one DescribeImages call); only when
there are any are the pins gathered (the tagged indexes' children, and what prune counts
as in use), and every archived pinned digest is restored with UpdateImageStorageClass.
ECR says a restore completes within 20 minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from mirror.aws.ecr import AwsError, call_aws
from mirror.engine.report import ErrorInfo
from mirror.errors import MirrorError
from mirror.oci.types import INDEX_TYPES
from mirror.prune.inuse import PruneAborted, Use
from mirror.prune.plan import Scope, index_children
from mirror.threads import ContextPool

__all__ = ["Restored", "restore_pinned"]

log = structlog.get_logger(__name__)

DESCRIBE_PAGE = 1000  # DescribeImages' largest page
WORKERS = 4


@dataclass(frozen=True)
class Restored:
    repository: str
    digest: str
    pinned_by: str


def _images(ecr: Any, repository: str, **filters: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = call_aws(
            ecr,
            "describe_images",
            repositoryName=repository,
            filter=filters,
            maxResults=DESCRIBE_PAGE,
            **({"nextToken": token} if token else {}),
        )
        found += page.get("imageDetails") or []
        token = page.get("nextToken")
        if not token:
            return found


def _archived(ecr: Any, repository: str) -> set[str]:
    """The repository's archived digests; the status is read from each image, so a
    registry that ignores the filter lists nothing as archived that is not."""
    images = _images(ecr, repository, imageStatus="ARCHIVED")
    return {i["imageDigest"] for i in images if i.get("imageStatus") == "ARCHIVED"}


def _pins(ecr: Any, repository: str, used: dict[str, str]) -> dict[str, str]:
    """digest -> who pins it: what workloads and protected locks name (`used`), and the
    children of every active tagged index and of every pinned index."""
    pins = dict(used)
    tagged = _images(ecr, repository, tagStatus="TAGGED", imageStatus="ACTIVE")
    holders = {
        i["imageDigest"]: f"index {', '.join(i.get('imageTags') or [])}"
        for i in tagged
        if i.get("imageManifestMediaType") in INDEX_TYPES or "imageManifestMediaType" not in i
    }
    holders.update({d: f"index pinned by {who}" for d, who in used.items()})
    for index, children in index_children(ecr, repository, sorted(holders)).items():
        for child in children:
            pins.setdefault(child, f"child of {holders[index]}")
    return pins


def restore_pinned(
    ecr: Any,
    scope: Scope,
    repositories: Iterable[str],
    uses: Callable[[], list[Use]],
) -> tuple[list[Restored], list[ErrorInfo]]:
    """Restore every archived digest in `repositories` that something pins; `uses` is
    asked only when some image is archived. Returns what was restored and what failed."""
    errors: list[ErrorInfo] = []

    def archived_in(repository: str) -> tuple[str, set[str]]:
        try:
            return repository, _archived(ecr, repository)
        except AwsError as exc:
            errors.append(ErrorInfo(exc.code, f"cannot list archived images: {exc.message}"))
            return repository, set()

    with ContextPool(WORKERS) as pool:
        archived = {r: found for r, found in pool.map(archived_in, sorted(set(repositories)))}
    archived = {r: found for r, found in archived.items() if found}
    if not archived:
        return [], errors
    try:
        in_use = uses()
    except PruneAborted as exc:  # still restore what the target itself pins
        errors.append(ErrorInfo(exc.code, exc.message, exc.hint))
        in_use = []
    used: dict[str, dict[str, str]] = {}
    for use in in_use:
        located = scope.locate(use.reference)
        if located is not None and located[2] is not None:
            used.setdefault(located[0], {})[located[2]] = use.holder
    restored: list[Restored] = []
    for repository, digests in sorted(archived.items()):
        try:
            pins = _pins(ecr, repository, used.get(repository, {}))
        except (AwsError, PruneAborted) as exc:
            errors.append(ErrorInfo(exc.code, f"{repository}: cannot read its pins: {exc}"))
            continue
        for digest in sorted(digests & set(pins)):
            try:
                call_aws(
                    ecr,
                    "update_image_storage_class",
                    repositoryName=repository,
                    imageId={"imageDigest": digest},
                    targetStorageClass="STANDARD",
                )
            except MirrorError as exc:
                errors.append(ErrorInfo(exc.code, f"{repository}@{digest}: {exc.message}"))
                continue
            log.warning(
                "archived_image_restored",
                repository=repository,
                digest=digest,
                pinned_by=pins[digest],
            )
            restored.append(Restored(repository, digest, pins[digest]))
    return restored, errors
