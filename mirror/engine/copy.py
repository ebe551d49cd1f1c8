"""Copy one image: check by digests (free), then blobs, child manifests, and the tag.

`check` costs no upstream pull: a HEAD upstream (Docker Hub does not count it) and a
HEAD in the target. Only a changed image reaches `copy`, which GETs manifests (paid) and
of an index only the children the target lacks. Pushing in dependency order means a tag
never points at something incomplete.

`copy` may stop with QuotaWait between any two requests; pulled manifests are cached for
the run, so the image resumes later without paying twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import structlog

from mirror.config.model import ArtifactSettings
from mirror.engine.blobs import BlobCopier, BlobOutcome
from mirror.engine.report import Action, ImageResult
from mirror.engine.upstream import Upstream
from mirror.errors import (
    ImmutableTagError,
    IntegrityError,
    NotFoundError,
    RegistryError,
    SelectionError,
    ServerError,
    UnsupportedError,
)
from mirror.oci.client import RegistryClient
from mirror.oci.reference import Reference
from mirror.oci.types import INDEX_TYPES, SCHEMA1_TYPES, Descriptor, Manifest, PlatformFilter

__all__ = ["Check", "CopyJob", "ImageCopier", "Staleness"]

log = structlog.get_logger(__name__)
# What a target that has not caught up with its own uploads answers a manifest that needs
# them: the blobs, or (an index) the child manifests.
UNSEEN_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN"})
UNSEEN_RETRY_SECONDS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class CopyJob:
    source: Reference
    target: Reference  # always carries the tag to write
    platforms: PlatformFilter | None = None  # None: every platform, bytes unchanged
    immutable: bool = False  # once in the target, never checked upstream again
    refresh: float | None = None  # the daemon's check interval for it; None: every pass
    written: str = ""  # as the config writes it: `nginx:1.16`, `python:3.12-slim`
    artifacts: ArtifactSettings | None = None  # referrers and cosign tags to copy after it


BeforeCopy = Callable[[CopyJob, Upstream, str | None, ImageResult], None]


class Staleness(IntEnum):
    """How out of date the target is; the most out of date are copied first."""

    MISSING = 0  # the target has no such tag
    CHANGED = 1  # the target tag holds another digest
    CURRENT = 2


@dataclass(frozen=True)
class Check:
    upstream: Descriptor
    staleness: Staleness
    target: Descriptor | None = None  # what the target tag holds now

    @property
    def pulls_needed(self) -> str:
        """Manifest GETs a copy would spend: an index's missing children are only known
        once the index is pulled."""
        return "1+children" if self.upstream.media_type in INDEX_TYPES else "1"


class ImageCopier:
    def __init__(
        self,
        target: RegistryClient,
        blobs: BlobCopier,
        prepare: Callable[[str], None] = lambda repository: None,
    ) -> None:
        """`prepare(repository)` runs before the first write to a target repository (ECR:
        create it with the configured settings); `before_copy(job, upstream, digest,
        result)` may refuse an image (raise) before anything of it is pulled or written."""
        self._target = target
        self._blobs = blobs
        self._prepare = prepare
        self.before_copy: BeforeCopy | None = None

    def check(self, job: CopyJob, upstream: Upstream, result: ImageResult) -> Check:
        """Compare the upstream and target digests without pulling anything. An immutable
        tag or a digest already in the target costs no upstream request at all."""
        source = job.source
        if job.immutable:
            existing = self._held(job.target.repository, job.target.identifier)
            if existing is not None:
                result.target_digest = existing.digest
                result.upstream_checked = False
                return Check(existing, Staleness.CURRENT)
        head, pulled = upstream.find_manifest(source.repository, source.identifier)
        result.upstream_manifest_gets += pulled
        if head is None:
            raise NotFoundError(
                f"{source} not found upstream",
                status=404,
                code="MANIFEST_UNKNOWN",
                hint="check the image name and tag, or remove it from the config",
            )
        if source.digest is not None:  # a pin: its own digest is the truth, not the HEAD's
            if head.digest and head.digest != source.digest:
                raise IntegrityError(
                    f"{source}: the registry announced {head.digest} for the pinned digest",
                    hint="the upstream substitutes content for a digest pin; nothing was written",
                )
            head = dataclasses.replace(head, digest=source.digest)
        if head.media_type in SCHEMA1_TYPES:  # known from the HEAD: no pull spent on it
            raise UnsupportedError(
                f"{source} is a Docker schema1 manifest",
                hint="schema1 is deprecated and mirror does not copy it; pick a newer tag",
            )
        result.upstream_digest = head.digest or None
        existing = self._held(job.target.repository, job.target.identifier)
        if existing is not None:
            result.target_digest = existing.digest
        if existing is None:
            staleness = Staleness.MISSING
        elif head.digest and self._holds(job, existing, head.digest):
            staleness = Staleness.CURRENT
        else:  # another digest, or the registry does not say (a GET will tell)
            staleness = Staleness.CHANGED
        return Check(head, staleness, existing)

    def _held(self, repository: str, reference: str) -> Descriptor | None:
        """What the target holds under `reference`. A target that fails to say (5xx:
        distribution whose disk filled mid-write can no longer read what it half wrote)
        is taken to hold nothing: pushing again rewrites it, and costs no pull more than
        a copy does."""
        try:
            return self._target.head_manifest(repository, reference)
        except ServerError as exc:
            log.warning(
                "target_unreadable", repository=repository, reference=reference, error=str(exc)
            )
            return None

    def _holds(self, job: CopyJob, existing: Descriptor, upstream_digest: str) -> bool:
        """Whether the target tag holds the upstream `upstream_digest` as the job wants it:
        the same digest (for an index, only with every platform wanted), or an index
        filtered from it to exactly the platforms wanted now."""
        if existing.digest == upstream_digest:
            return job.platforms is None or existing.media_type not in INDEX_TYPES
        if job.platforms is not None and existing.media_type in INDEX_TYPES:
            written = self._target.get_manifest(job.target.repository, job.target.identifier)
            kept = written.kept_platforms
            return written.upstream_digest == upstream_digest and kept == job.platforms
        return False

    def _from_target(self, job: CopyJob, check: Check) -> Manifest | None:
        """The upstream index as the target holds it already, to filter the platforms now
        wanted from, with no pull: the whole index (the tag holds the upstream's digest),
        or one filtered from it to platforms that include every one wanted now (a
        narrowing). None when only the upstream has what is needed."""
        held, upstream_digest = check.target, check.upstream.digest
        if job.platforms is None or held is None or held.media_type not in INDEX_TYPES:
            return None
        if held.digest == upstream_digest:  # fetched by digest: verified to be the upstream's
            return self._target.get_manifest(job.target.repository, upstream_digest)
        written = self._target.get_manifest(job.target.repository, held.digest)
        kept = written.kept_platforms
        if written.upstream_digest == upstream_digest and kept and kept.covers(job.platforms):
            return written
        return None

    def copy(
        self, job: CopyJob, upstream: Upstream, result: ImageResult, check: Check | None
    ) -> None:
        """Bring the target tag up to date; raises QuotaWait, MirrorError or httpx errors.

        Without a fresh `check` (a resumed image) the digests are compared again: the free
        HEAD also re-reads the quota, and the tag may have moved while we waited.
        """
        started = time.monotonic()
        try:
            self._copy(job, upstream, result, check or self.check(job, upstream, result))
        finally:
            result.seconds = round(result.seconds + time.monotonic() - started, 3)

    def _copy(self, job: CopyJob, upstream: Upstream, result: ImageResult, check: Check) -> None:
        if check.staleness is Staleness.CURRENT:
            result.action = Action.SKIPPED
            return
        if self.before_copy is not None:
            self.before_copy(job, upstream, check.upstream.digest or None, result)
        self._prepare(job.target.repository)
        previous = result.target_digest  # the check saw this in the target
        source = job.source
        manifest = self._from_target(job, check) if check.upstream.digest else None
        if manifest is None:
            manifest = self.pull(upstream, source.repository, check.upstream.digest or None,
                                 source.identifier, result)  # fmt: skip
        upstream_digest = check.upstream.digest or manifest.digest
        result.upstream_digest = upstream_digest
        # The HEAD carried no Docker-Content-Digest (it is optional): the GET tells.
        held = check.target
        if not check.upstream.digest and held and self._holds(job, held, manifest.digest):
            result.action = Action.SKIPPED
            return
        top = self.copy_content(job, upstream, manifest, result, upstream_digest)
        try:
            self.put_manifest(job.target.repository, job.target.identifier, top)
        except RegistryError as exc:
            if exc.code == "TAG_INVALID" and "immutable" in exc.message.lower():
                raise ImmutableTagError(
                    f"{job.target} moved upstream to {top.digest}, but the repository's tags "
                    "are immutable",
                    hint="set target.repository.tag_mutability: IMMUTABLE_WITH_EXCLUSION with "
                    f"tag_mutability_exclusions: [{job.target.tag}] for tags that move",
                ) from None
            raise
        result.manifests_pushed += 1
        result.target_digest = top.digest
        if previous is not None and previous != top.digest:
            result.previous_digest = previous
        result.action = Action.COPIED

    def pull(
        self,
        upstream: Upstream,
        repository: str,
        digest: str | None,
        reference: str,
        result: ImageResult,
    ) -> Manifest:
        """A manifest by digest, from this pass's pulls or paid for upstream."""
        manifest, pulled = upstream.pull(repository, reference, digest)
        result.upstream_manifest_gets += pulled
        return manifest

    def copy_content(
        self,
        job: CopyJob,
        upstream: Upstream,
        manifest: Manifest,
        result: ImageResult,
        upstream_digest: str | None = None,
    ) -> Manifest:
        """Everything `manifest` needs in the target; returns the manifest to tag.
        `upstream_digest`: the upstream index `manifest` stands for, when it is the
        target's filtered copy of it."""
        if not manifest.is_index:
            self._copy_blobs(job, upstream, manifest, result)
            return manifest
        top = manifest.filtered(job.platforms, upstream_digest) if job.platforms else manifest
        if job.platforms and not top.children:
            raise SelectionError(
                f"{job.source} has none of the platforms {job.platforms}",
                hint="available: "
                + ", ".join(sorted({str(c.platform) for c in manifest.children if c.platform})),
            )
        for child in top.children:
            self.copy_child(job, upstream, child, result)
        return top

    def copy_child(
        self, job: CopyJob, upstream: Upstream, child: Descriptor, result: ImageResult
    ) -> bool:
        """Copy a manifest by digest unless the target has it whole; whether it was copied."""
        target_repo = job.target.repository
        if self._held(target_repo, child.digest) is not None:
            return self._make_whole(job, upstream, child, result)
        manifest = self.pull(upstream, job.source.repository, child.digest, child.digest, result)
        if manifest.is_index:
            for grandchild in manifest.children:
                self.copy_child(job, upstream, grandchild, result)
        else:
            self._copy_blobs(job, upstream, manifest, result)
        self.put_manifest(target_repo, child.digest, manifest)
        result.manifests_pushed += 1
        return True

    def _make_whole(
        self, job: CopyJob, upstream: Upstream, child: Descriptor, result: ImageResult
    ) -> bool:
        """A child the target has, checked for its blobs (read from the target: no pull):
        one whose uploads a full disk cut short would fail every index that names it. Its
        missing blobs are copied and it is pushed again; whether it had to be."""
        repository = job.target.repository
        held = self._target.get_manifest(repository, child.digest)
        if held.is_index or not self._copy_blobs(job, upstream, held, result):
            return False
        log.warning("child_made_whole", repository=repository, digest=child.digest)
        self.put_manifest(repository, child.digest, held)
        result.manifests_pushed += 1
        return True

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        """Push a manifest whose blobs and children this pass has just made sure of in the
        target. An eventually consistent target may not see them yet and answer
        MANIFEST_BLOB_UNKNOWN once (openshift/image-registry#220): asked again after a
        pause, a few times, instead of failing the image until the next pass."""
        for pause in (*UNSEEN_RETRY_SECONDS, None):
            try:
                self._target.put_manifest(repository, reference, manifest)
                return
            except RegistryError as exc:
                if exc.code not in UNSEEN_CODES or pause is None:
                    raise
                log.info(
                    "manifest_push_retried",
                    repository=repository,
                    reference=reference,
                    code=exc.code,
                    wait_seconds=pause,
                )
                time.sleep(pause)

    def _copy_blobs(
        self, job: CopyJob, upstream: Upstream, manifest: Manifest, result: ImageResult
    ) -> int:
        """Every blob of `manifest` in the target; how many it lacked (copied or mounted)."""
        transfers = self._blobs.copy_all(
            upstream, job.source.repository, job.target.repository, manifest.blobs, str(job.source)
        )
        for transfer in transfers:
            result.bytes += transfer.bytes
            if transfer.outcome is BlobOutcome.COPIED:
                result.blobs_copied += 1
            elif transfer.outcome is BlobOutcome.MOUNTED:
                result.blobs_mounted += 1
            else:
                result.blobs_skipped += 1
        return sum(t.outcome is not BlobOutcome.SKIPPED for t in transfers)
