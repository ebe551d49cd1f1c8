"""Copy one image: decide by digests, then blobs, then child manifests, then the tag.

Deciding costs no upstream pull: a HEAD upstream (free on Docker Hub) and a HEAD in the
target. Only a changed image GETs manifests, and of an index only the children the target
lacks. Pushing in dependency order means a tag never points at something incomplete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import structlog

from mirror.blobs import BlobCopier, BlobOutcome
from mirror.errors import MirrorError, NotFoundError, SelectionError
from mirror.oci.client import RegistryClient
from mirror.oci.reference import Reference
from mirror.oci.types import INDEX_TYPES, Descriptor, Manifest, PlatformFilter
from mirror.report import Action, ErrorInfo, ImageResult

__all__ = ["CopyJob", "ImageCopier"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CopyJob:
    source: Reference
    target: Reference  # always carries the tag to write
    platforms: PlatformFilter | None = None  # None: every platform, bytes unchanged


class ImageCopier:
    def __init__(self, target: RegistryClient, blobs: BlobCopier, *, dry_run: bool) -> None:
        self._target = target
        self._blobs = blobs
        self._dry_run = dry_run

    def run(self, job: CopyJob, upstream: RegistryClient) -> ImageResult:
        """Copy `job` and say what happened; never raises for a per-image failure."""
        started = time.monotonic()
        result = ImageResult(
            source=str(job.source),
            target=str(job.target),
            platforms=str(job.platforms) if job.platforms else "all",
        )
        try:
            self._copy(job, upstream, result)
        except (MirrorError, httpx.HTTPError) as exc:
            result.action = Action.FAILED
            result.error = ErrorInfo.from_exception(exc)
        except Exception as exc:  # a bug must not stop the other images
            log.exception("image_crashed", source=str(job.source))
            result.action = Action.FAILED
            result.error = ErrorInfo.from_exception(exc)
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _copy(self, job: CopyJob, upstream: RegistryClient, result: ImageResult) -> None:
        source = job.source
        head = upstream.head_manifest(source.repository, source.identifier)
        if head is None:
            raise NotFoundError(
                f"{source} not found upstream",
                status=404,
                code="MANIFEST_UNKNOWN",
                hint="check the image name and tag, or remove it from the config",
            )
        if head.digest:
            result.upstream_digest = head.digest
            if self._up_to_date(job, head.digest, result):
                result.action = Action.SKIPPED
                return
        if self._dry_run:
            result.action = Action.WOULD_COPY
            result.estimated_upstream_gets = "1+children" if head.media_type in INDEX_TYPES else "1"
            return
        manifest = upstream.get_manifest(source.repository, head.digest or source.identifier)
        result.upstream_manifest_gets += 1
        result.upstream_digest = manifest.digest
        if not head.digest and self._up_to_date(job, manifest.digest, result):
            result.action = Action.SKIPPED
            return
        top = self._copy_content(job, upstream, manifest, result)
        self._target.put_manifest(job.target.repository, job.target.identifier, top)
        result.manifests_pushed += 1
        result.target_digest = top.digest
        result.action = Action.COPIED

    def _up_to_date(self, job: CopyJob, upstream_digest: str, result: ImageResult) -> bool:
        """Whether the target tag already holds this upstream digest (HEAD, or the
        annotation a platform-filtered index carries)."""
        target = job.target
        existing = self._target.head_manifest(target.repository, target.identifier)
        if existing is None:
            return False
        result.target_digest = existing.digest
        if existing.digest == upstream_digest:
            return True
        if job.platforms is None or existing.media_type not in INDEX_TYPES:
            return False
        written = self._target.get_manifest(target.repository, target.identifier)
        return written.upstream_digest == upstream_digest

    def _copy_content(
        self, job: CopyJob, upstream: RegistryClient, manifest: Manifest, result: ImageResult
    ) -> Manifest:
        """Everything `manifest` needs in the target; returns the manifest to tag."""
        if not manifest.is_index:
            self._copy_blobs(job, upstream, manifest, result)
            return manifest
        top = manifest.filtered(job.platforms) if job.platforms else manifest
        if job.platforms and not top.children:
            raise SelectionError(
                f"{job.source} has none of the platforms {job.platforms}",
                hint="available: "
                + ", ".join(sorted({str(c.platform) for c in manifest.children if c.platform})),
            )
        for child in top.children:
            self._copy_child(job, upstream, child, result)
        return top

    def _copy_child(
        self, job: CopyJob, upstream: RegistryClient, child: Descriptor, result: ImageResult
    ) -> None:
        target_repo = job.target.repository
        if self._target.head_manifest(target_repo, child.digest) is not None:
            return
        manifest = upstream.get_manifest(job.source.repository, child.digest)
        result.upstream_manifest_gets += 1
        if manifest.is_index:
            for grandchild in manifest.children:
                self._copy_child(job, upstream, grandchild, result)
        else:
            self._copy_blobs(job, upstream, manifest, result)
        self._target.put_manifest(target_repo, child.digest, manifest)
        result.manifests_pushed += 1

    def _copy_blobs(
        self, job: CopyJob, upstream: RegistryClient, manifest: Manifest, result: ImageResult
    ) -> None:
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
