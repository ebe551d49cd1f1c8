"""The prune plan: every image in the mirror's repositories, kept (and why, and by whom)
or to be deleted (and why).

Kept: a tag the config still selects, anything a workload refers to by tag or digest
(mapped from upstream names too), the children of a kept index and the index of a
child in use, and anything pushed within keep_days. Everything else in a repository
under the prefix goes: tags that fell out of the config, images left untagged when a
tag moved, repositories the config no longer names. Pull-through-cache repositories
belong to ECR's cache and are never touched.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from mirror.aws.ecr import OWNER_TAG, OWNER_VALUE, PREFIX_TAG, AwsError, call_aws, owned
from mirror.engine.naming import target_repository
from mirror.errors import MirrorError
from mirror.oci.reference import parse_reference
from mirror.oci.types import DOCKER_MANIFEST, INDEX_TYPES, OCI_MANIFEST
from mirror.prune.inuse import PruneAborted, Use

log = structlog.get_logger(__name__)

__all__ = ["Decision", "Scope", "build_plan", "index_children"]

BATCH_GET_MAX = 100


@dataclass
class Decision:
    repository: str
    digest: str
    tags: list[str]
    pushed_at: datetime | None
    delete: bool = False
    reason: str = ""
    is_index: bool = False
    result: str | None = None  # after --apply: "deleted", or the failure

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "tags": self.tags,
            "pushed_at": self.pushed_at.isoformat() if self.pushed_at else None,
            "action": "delete" if self.delete else "keep",
            "reason": self.reason,
            "result": self.result,
        }


@dataclass
class Scope:
    """What the config says about the target: where mirror writes, and what it wants."""

    registry: str  # the ECR host
    prefix: str
    wanted: dict[str, set[str]]  # repository -> tags the config selects now
    unresolved: dict[str, str] = field(default_factory=dict)  # repository -> why unknown
    skipped_prefixes: tuple[str, ...] = ()  # pull-through-cache repositories
    listed: frozenset[str] | None = None  # prune.repositories: only these (empty prefix)

    def owns(self, repository: str) -> bool:
        """Whether `repository`'s name puts it in prune's reach; its ownership tags are
        checked as well before anything in it is planned (build_plan)."""
        if self.listed is not None and repository not in self.listed:
            return False
        if self.prefix and not repository.startswith(self.prefix.strip("/") + "/"):
            return False
        return not any(repository.startswith(p + "/") for p in self.skipped_prefixes)

    def locate(self, reference: str) -> tuple[str, str | None, str | None] | None:
        """(repository, tag, digest) that a workload's reference means in the mirror."""
        try:
            ref = parse_reference(reference)
        except MirrorError:
            return None
        if ref.registry == self.registry:
            repository = ref.repository
        else:
            repository = target_repository(ref, self.prefix)
        if not self.owns(repository):
            return None
        return repository, ref.tag, ref.digest


def _pages(ecr: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    token: str | None = None
    while True:
        try:
            page = call_aws(ecr, operation, **kwargs, **({"nextToken": token} if token else {}))
        except AwsError as exc:
            raise PruneAborted(
                f"cannot list the mirror's images: {exc}; nothing was deleted"
            ) from None
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


def _tagged(ecr: Any, repository: dict[str, Any], prefix: str) -> bool:
    """Only a repository tagged as mirror's (ecr.ownership_tags) is ever pruned: one under
    the prefix without the tags is someone else's, or predates them, and is left alone
    (a sync that writes to it tags it)."""
    try:
        tags = call_aws(ecr, "list_tags_for_resource", resourceArn=repository["repositoryArn"])
    except AwsError as exc:
        raise PruneAborted(
            f"cannot read the tags of {repository['repositoryName']}: {exc}"
        ) from None
    if owned(tags.get("tags") or [], prefix):
        return True
    log.warning(
        "prune_skipped_unowned",
        repository=repository["repositoryName"],
        hint=f"it lacks the tags {OWNER_TAG}={OWNER_VALUE}, {PREFIX_TAG}={prefix.strip('/')}",
    )
    return False


def index_children(ecr: Any, repository: str, indexes: list[str]) -> dict[str, list[str]]:
    """index digest -> its children's digests, read from ECR (BatchGetImage)."""
    found: dict[str, list[str]] = {}
    for start in range(0, len(indexes), BATCH_GET_MAX):
        ids = [{"imageDigest": d} for d in indexes[start : start + BATCH_GET_MAX]]
        try:
            answer = call_aws(
                ecr,
                "batch_get_image",
                repositoryName=repository,
                imageIds=ids,
                acceptedMediaTypes=[*INDEX_TYPES, OCI_MANIFEST, DOCKER_MANIFEST],
            )
        except AwsError as exc:
            raise PruneAborted(f"cannot read the indexes in {repository}: {exc}") from None
        for image in answer.get("images", []):
            manifest = json.loads(image["imageManifest"])
            digests = [m["digest"] for m in manifest.get("manifests", [])]
            found[image["imageId"]["imageDigest"]] = digests
    return found


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class _Repository:
    def __init__(self, name: str, images: list[dict[str, Any]], children: dict[str, list[str]]):
        self.name = name
        self.decisions = {
            i["imageDigest"]: Decision(
                name,
                i["imageDigest"],
                sorted(i.get("imageTags", [])),
                i.get("imagePushedAt"),
                is_index=i["imageDigest"] in children,
            )
            for i in images
        }
        self.children = children
        self.parents: dict[str, list[str]] = defaultdict(list)
        for index, digests in children.items():
            for child in digests:
                self.parents[child].append(index)
        self.kept: dict[str, str] = {}

    def keep(self, digest: str, reason: str) -> None:
        if digest in self.decisions and digest not in self.kept:
            self.kept[digest] = reason

    def keep_family(self) -> None:
        """Children of a kept index stay, until nothing changes (indexes may nest)."""
        changed = True
        while changed:
            changed = False
            for digest in list(self.kept):
                for child in self.children.get(digest, []):
                    if child in self.decisions and child not in self.kept:
                        self.kept[child] = f"child of kept index {_short(digest)}"
                        changed = True


def build_plan(
    ecr: Any, scope: Scope, uses: list[Use], keep_days: int, now: datetime
) -> list[Decision]:
    by_repository: dict[str, list[tuple[str | None, str | None, str]]] = defaultdict(list)
    for use in uses:
        located = scope.locate(use.reference)
        if located is not None:
            repository, tag, digest = located
            by_repository[repository].append((tag, digest, use.holder))
    decisions: list[Decision] = []
    candidates = [
        r
        for r in _pages(ecr, "describe_repositories", "repositories")
        if scope.owns(r["repositoryName"])
    ]
    repositories = sorted(r["repositoryName"] for r in candidates if _tagged(ecr, r, scope.prefix))
    for name in repositories:
        images = list(_pages(ecr, "describe_images", "imageDetails", repositoryName=name))
        indexes = [
            i["imageDigest"]
            for i in images
            if i.get("imageManifestMediaType") in INDEX_TYPES or "imageManifestMediaType" not in i
        ]
        repo = _Repository(name, images, index_children(ecr, name, indexes))
        _decide(repo, scope, by_repository[name], keep_days, now)
        decisions += sorted(repo.decisions.values(), key=lambda d: (d.delete, d.tags, d.digest))
    return decisions


def _decide(
    repo: _Repository,
    scope: Scope,
    uses: list[tuple[str | None, str | None, str]],
    keep_days: int,
    now: datetime,
) -> None:
    if repo.name in scope.unresolved:
        for digest in repo.decisions:
            repo.keep(
                digest, f"the config entry could not be resolved ({scope.unresolved[repo.name]})"
            )
    wanted = scope.wanted.get(repo.name, set())
    for digest, decision in repo.decisions.items():
        selected = [t for t in decision.tags if t in wanted]
        if selected:
            repo.keep(digest, f"selected by the config ({', '.join(selected)})")
    for tag, digest, holder in uses:
        for candidate, decision in repo.decisions.items():
            if candidate == digest or (tag is not None and digest is None and tag in decision.tags):
                repo.keep(candidate, f"in use by {holder}")
                for index in repo.parents.get(candidate, []):
                    repo.keep(index, f"index of {_short(candidate)}, in use by {holder}")
    repo.keep_family()
    cutoff = now - timedelta(days=keep_days)
    for digest, decision in repo.decisions.items():
        if decision.pushed_at is not None and decision.pushed_at > cutoff:
            repo.keep(digest, f"pushed within keep_days ({keep_days})")
    repo.keep_family()
    for digest, decision in repo.decisions.items():
        if digest in repo.kept:
            decision.reason = repo.kept[digest]
        elif repo.name not in scope.wanted:
            decision.delete, decision.reason = True, "repository no longer in the config"
        elif decision.tags:
            decision.delete = True
            decision.reason = f"no longer selected by the config ({', '.join(decision.tags)})"
        else:
            decision.delete, decision.reason = True, "untagged: left behind when its tag moved"
