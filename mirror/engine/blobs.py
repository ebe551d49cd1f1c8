"""Blob transfer: each digest moves at most once per run, verified while it streams.

A blob already in the target repository is skipped; one that this run already put in
another target repository is mounted from there; anything else streams upstream -> target
in one PUT. The copy is checked against digest and size on the fly, and the last chunk is
held back until the check passes, so the target can never commit bad bytes.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum

import httpx
import structlog

from mirror.engine import progress
from mirror.engine.upstream import Upstream
from mirror.errors import (
    DownloadCutError,
    IntegrityError,
    RegistryError,
    ServerError,
    is_retryable,
    printable,
)
from mirror.oci.client import RegistryClient
from mirror.oci.grammar import require_digest
from mirror.oci.limits import check_deadline
from mirror.oci.retry import RetryPolicy
from mirror.oci.types import Descriptor
from mirror.oci.wire import READINTO
from mirror.threads import ContextPool

__all__ = ["BlobCopier", "BlobOutcome", "response_chunks", "upstream_chunks", "verified_chunks"]

log = structlog.get_logger(__name__)

WIRE_CHUNK_SIZE = 1024 * 1024  # the lean wire's buffers: two per blob in flight
PROGRESS_MIN_BYTES = 64 * 1024 * 1024
PROGRESS_EVERY_SECONDS = 5.0
# Resuming a cut download (containers/image's docker/body_reader.go reconnects after 1 MiB
# of progress, about a second apart).
MIN_RESUME_PROGRESS = 1024 * 1024
STALLED_RESUMES = 3
RESUME_PAUSE_SECONDS = (0.5, 1.0)
# A body cut part-way: closed or reset, or silent past the read timeout; on a reconnect,
# a refused connection or a registry's transient error too.
RESUMABLE = (httpx.TransportError, RegistryError)


class BlobOutcome(StrEnum):
    COPIED = "copied"
    MOUNTED = "mounted"
    SKIPPED = "skipped"


ProgressFn = Callable[[int], None]


def verified_chunks(
    chunks: Iterable[bytes | memoryview], digest: str, size: int, progress: ProgressFn | None = None
) -> Iterator[bytes | memoryview]:
    """Yield a blob's bytes, raising IntegrityError before the last chunk if they are wrong.

    Over the lean wire (mirror/oci/wire.py) the body is read into two reusable 1 MiB
    buffers and hashed in place; each chunk yielded is a view that stays valid until the
    next one is asked for, which is how the PUT consumes it. The previous chunk is held
    back until the next has arrived, so the last one is sent only once size and digest
    have been checked.
    """
    algorithm, _, expected_hex = require_digest(digest, "blob").partition(":")
    hasher = hashlib.new(algorithm)
    received = 0
    held: bytes | memoryview | None = None
    for chunk in chunks:
        received += len(chunk)
        if received > size:
            raise IntegrityError(
                f"blob {digest} is longer than its declared {size} bytes",
                hint="the upstream served different content; nothing was tagged",
            )
        hasher.update(chunk)
        check_deadline()
        if held is not None:
            yield held
        held = chunk
        if progress is not None:
            progress(received)
    if received != size or hasher.hexdigest() != expected_hex:
        raise IntegrityError(
            f"blob {digest}: got {received} bytes hashing to {algorithm}:{hasher.hexdigest()}, "
            f"expected {size} bytes",
            hint="the upstream served corrupt or substituted content; nothing was tagged",
        )
    if held is not None:
        yield held


def response_chunks(
    response: httpx.Response, size: int, skip: int = 0
) -> Iterator[bytes | memoryview]:
    """A body's raw bytes after its first `skip`, a socket read at a time."""
    readinto = response.extensions.get(READINTO)
    if readinto is None:  # httpx's own transport (behind a proxy)
        # As they arrive, not gathered: bytes held back when a connection drops would be
        # fetched again on the resume.
        for chunk in response.iter_raw():
            dropped = min(skip, len(chunk))
            skip -= dropped
            if dropped < len(chunk):
                yield chunk[dropped:]
        return
    # Two buffers: one is being sent while the other fills. A small blob (a config, an
    # empty layer) gets small ones; a body longer than declared still streams, and fails.
    length = max(1, min(WIRE_CHUNK_SIZE, size))
    views = [memoryview(bytearray(length)) for _ in range(2)]
    turn = 0
    while True:
        view = views[turn]
        count = readinto(view)
        if not count:
            return
        dropped = min(skip, count)
        skip -= dropped
        if dropped == count:
            continue  # skipped bytes: this buffer was never handed out
        yield view[dropped:count]
        turn ^= 1


def upstream_chunks(
    upstream: Upstream, repository: str, digest: str, size: int
) -> Generator[bytes | memoryview, None, None]:
    """A blob's bytes from upstream, in order, over as many connections as it takes.

    A CDN that cuts a large blob part-way (registry.k8s.io's, mcr's for 4 GB Windows
    layers) is asked again from the byte it stopped at (Range), the way containers/image
    resumes, so the same target upload and the same hash go on. A connection that brought
    at least MIN_RESUME_PROGRESS earns another; STALLED_RESUMES in a row that brought less
    end it with an error naming the upstream. The image's deadline bounds it all."""
    received = 0
    served_by: httpx.URL | None = None
    stalled = resumes = 0
    while True:
        started_at, reading = received, False
        try:
            with upstream.open_blob(repository, digest, offset=received, at=served_by) as body:
                reading, served_by = True, body.url
                skip = received if body.status_code == 200 else 0
                for chunk in response_chunks(body, size, skip):
                    received += len(chunk)
                    yield chunk
            if received >= size:
                return
            cut: Exception = httpx.RemoteProtocolError(f"the body ended at byte {received}")
        except RESUMABLE as exc:
            if not reading and not resumes:
                raise  # the first request failed: the copy is retried as a whole
            if isinstance(exc, RegistryError) and not is_retryable(exc):
                raise
            cut = exc
        stalled = 0 if received - started_at >= MIN_RESUME_PROGRESS else stalled + 1
        if stalled > STALLED_RESUMES:
            raise DownloadCutError(
                f"{upstream.registry}: blob {digest}: the download was cut at byte {received} "
                f"of {size} after {resumes} reconnects ({printable(str(cut), limit=200)})",
                hint="the upstream or its CDN keeps dropping the connection; the next pass "
                "tries again",
            ) from cut
        resumes += 1
        log.info(
            "blob_resumed",
            registry=upstream.registry,
            digest=digest,
            offset=received,
            size=size,
            reconnects=resumes,
            cause=printable(str(cut), limit=200),
        )
        time.sleep(random.uniform(*RESUME_PAUSE_SECONDS))


def _progress(descriptor: Descriptor, image: str) -> ProgressFn | None:
    """The live display's bytes (mirror/engine/progress.py) when a person watches; otherwise a
    log line every few seconds for a large blob, so a long copy still says it moves."""
    sink = progress.active()
    if sink is not None:
        sink.blob_started(image, descriptor.digest, descriptor.size)
        return lambda received: sink.blob_advanced(image, descriptor.digest, received)
    if descriptor.size < PROGRESS_MIN_BYTES:
        return None
    last = time.monotonic()

    def report(received: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS:
            last = now
            log.info(
                "blob_progress",
                image=image,
                digest=descriptor.digest,
                mib_done=received // 2**20,
                mib_total=descriptor.size // 2**20,
            )

    return report


@dataclass(frozen=True)
class _BlobJob:
    """One blob of one image: where it comes from and which target repository needs it."""

    upstream: Upstream
    source_repo: str
    target_repo: str
    blob: Descriptor
    image: str


@dataclass(frozen=True)
class BlobTransfer:
    outcome: BlobOutcome
    bytes: int = 0


class BlobCopier:
    """Shared by every image in a run; remembers where each digest already is in the target."""

    def __init__(self, target: RegistryClient, retry: RetryPolicy, workers: int) -> None:
        self._target = target
        self._retry = retry
        self._pool = ContextPool(max_workers=workers, thread_name_prefix="blob")
        self._lock = threading.Lock()
        self._present: dict[str, set[str]] = {}
        self._in_flight: dict[str, Future[None]] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def copy_all(
        self,
        upstream: Upstream,
        source_repo: str,
        target_repo: str,
        blobs: list[Descriptor],
        image: str,
    ) -> list[BlobTransfer]:
        """Copy every blob concurrently; raise the first failure once all have stopped."""
        unique = {b.digest: b for b in blobs}.values()
        # Each blob runs in a copy of this context: the image's deadline goes with it.
        futures = [
            self._pool.submit(
                self._ensure, _BlobJob(upstream, source_repo, target_repo, blob, image)
            )
            for blob in unique
        ]
        results: list[BlobTransfer] = []
        first_error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # collected, re-raised below
                first_error = first_error or exc
                for other in futures:
                    other.cancel()
        if first_error is not None:
            raise first_error
        return results

    def _claim(self, digest: str, target_repo: str) -> tuple[bool, Future[None] | None]:
        """(already present, future to wait on); (False, None) means this thread owns it."""
        with self._lock:
            if target_repo in self._present.get(digest, ()):
                return True, None
            running = self._in_flight.get(digest)
            if running is None:
                self._in_flight[digest] = Future()
            return False, running

    def _ensure(self, job: _BlobJob) -> BlobTransfer:
        digest = job.blob.digest
        while True:
            present, running = self._claim(digest, job.target_repo)
            if present:
                return BlobTransfer(BlobOutcome.SKIPPED)
            if running is None:
                break
            running.exception()  # wait for the other copy; on failure try ourselves
        try:
            transfer = self._retry.call(lambda: self._transfer(job))
            with self._lock:
                self._present.setdefault(digest, set()).add(job.target_repo)
            return transfer
        finally:
            with self._lock:
                done = self._in_flight.pop(digest)
            done.set_result(None)

    def _mount_source(self, digest: str, target_repo: str) -> str | None:
        with self._lock:
            return min(self._present.get(digest, set()) - {target_repo}, default=None)

    def _transfer(self, job: _BlobJob) -> BlobTransfer:
        """One attempt at the whole unit: check, mount or upload."""
        blob, target_repo = job.blob, job.target_repo
        try:
            present = self._target.blob_exists(target_repo, blob.digest)
        except ServerError as exc:  # it cannot say (a blob half written on a full disk)
            log.warning("target_blob_unreadable", digest=blob.digest, error=str(exc))
            present = False  # uploading it again rewrites it
        if present:
            return BlobTransfer(BlobOutcome.SKIPPED)
        mount_from = self._mount_source(blob.digest, target_repo)
        location = self._target.start_upload(
            target_repo, (blob.digest, mount_from) if mount_from else None
        )
        if location is None:
            log.debug("blob_mounted", digest=blob.digest, repository=target_repo)
            return BlobTransfer(BlobOutcome.MOUNTED)
        chunks = upstream_chunks(job.upstream, job.source_repo, blob.digest, blob.size)
        verified = verified_chunks(chunks, blob.digest, blob.size, _progress(blob, job.image))
        try:
            self._target.finish_upload(location, blob.digest, blob.size, verified)
        except BaseException:
            self._target.cancel_upload(location)  # its partial data, never to complete
            raise
        finally:
            chunks.close()  # the upstream connection, whatever became of the upload
        log.debug("blob_copied", digest=blob.digest, bytes=blob.size, repository=target_repo)
        return BlobTransfer(BlobOutcome.COPIED, blob.size)
