"""What a pass did, per image: the data behind the terminal lines and `--report` JSON."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx

from mirror import __version__
from mirror.aws.ecr import RefusedSetting
from mirror.errors import ConfigError, MirrorError, printable, safe_url
from mirror.files import atomic_write
from mirror.secrets import mask

__all__ = ["Action", "ErrorInfo", "ImageResult", "PassReport", "check_report_path", "write_report"]


class Action(StrEnum):
    COPIED = "copied"
    SKIPPED = "skipped"  # already up to date in the target
    WOULD_COPY = "would-copy"  # `mirror plan`: a sync would copy this image
    DEFERRED = "deferred"  # waiting for upstream quota past --max-wait; a later run copies it
    PULL_THROUGH = "pull-through-cache"  # served by an ECR pull-through cache rule, not copied
    FAILED = "failed"


@dataclass
class ErrorInfo:
    code: str
    message: str
    hint: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, MirrorError):
            return cls(exc.code, mask(printable(exc.message)), printable(exc.hint))
        if isinstance(exc, httpx.HTTPError):
            where = ""
            with contextlib.suppress(RuntimeError):  # an error raised before any request
                where = f" ({exc.request.method} {safe_url(exc.request.url)})"
            return cls(
                "NETWORK",
                mask(printable(f"{type(exc).__name__}: {exc}{where}")),
                "check that the registry is reachable",
            )
        return cls("INTERNAL", printable(f"{type(exc).__name__}: {exc}"), "this is a bug in mirror")


@dataclass
class ImageResult:
    source: str
    target: str
    action: Action = Action.FAILED
    upstream_digest: str | None = None
    target_digest: str | None = None
    previous_digest: str | None = None  # what the target tag held before this copy moved it
    upstream_checked: bool = True  # False: an immutable tag already mirrored, not asked
    artifacts: list[str] | None = None  # signatures, attestations, SBOMs copied with it
    artifacts_error: ErrorInfo | None = None  # why they were not (the image is in place)
    platforms: str = "all"
    bytes: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    manifests_pushed: int = 0
    upstream_manifest_gets: int = 0
    # `mirror plan`: manifest GETs a sync would spend; "+children" when an index's missing
    # children can only be known by pulling the index.
    estimated_upstream_gets: str | None = None
    # `mirror plan`: whether the upstream's remaining quota covers this image after the
    # images planned before it.
    quota: str | None = None
    seconds: float = 0.0
    finished_after: float = 0.0  # seconds since the pass started
    error: ErrorInfo | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = str(self.action)
        return {k: v for k, v in data.items() if v is not None}


@dataclass
class CredentialUsage:
    """Pulls one credential spent in a pass, and the last quota figures seen for it."""

    credential: str
    pulls: int
    limit: int | None = None
    remaining: int | None = None
    window_seconds: float | None = None
    headers_overclaim: int = 0  # pulls the headers claimed that a 429 showed were not there


@dataclass
class RegistryUsage:
    registry: str
    credentials: list[CredentialUsage] = field(default_factory=list)
    waited_seconds: float = 0.0
    token_realm_retries: int = 0  # the token service throttled or failed, and was retried

    @property
    def pulls(self) -> int:
        return sum(c.pulls for c in self.credentials)


@dataclass
class PassReport:
    command: str
    config_source: str = ""  # a file path, s3://BUCKET/KEY or ssm:/PARAMETER
    started_at: float | None = None  # Unix time
    finished_at: float | None = None
    run_id: str | None = None  # the run_id on every log line of this pass
    images: list[ImageResult] = field(default_factory=list)
    registries: list[RegistryUsage] = field(default_factory=list)
    seconds: float = 0.0
    retry_in: float | None = None  # when quota-deferred images may be tried again
    not_due: int = 0  # the daemon: images left out because their refresh has not passed
    events_sent: int = 0  # change events delivered (one per moved tag and destination)
    events_failed: int = 0  # ...and given up on; each is logged in full as event_undelivered
    # Tags outside the OCI grammar that upstream listings held, per entry: dropped, unused.
    dropped_tags: dict[str, int] = field(default_factory=dict)
    # What failed beside the images (replication could not be configured): exit 1.
    errors: list[ErrorInfo] = field(default_factory=list)
    # Repository settings ECR refused; the images were still copied: exit 1.
    settings_refused: list[RefusedSetting] = field(default_factory=list)
    # Repositories mirror did not create nor adopt: images went in, settings left alone.
    unowned_repositories: list[str] = field(default_factory=list)
    # ECR's BLOB_MOUNTING registry setting (ENABLED, DISABLED), None where unknown.
    blob_mounting: str | None = None
    # Images already mirrored that a replica lacked, copied there (replica, image, digest).
    replicas_filled: list[dict[str, str]] = field(default_factory=list)
    # Archived images that something pins, restored (repository, digest, pinned_by).
    restored: list[dict[str, str]] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for r in self.images if r.action is action)

    def failures(self, limit: int) -> list[dict[str, str]]:
        """The first `limit` failed images and their codes: what pass_done and /healthz show."""
        failed = [r for r in self.images if r.action is Action.FAILED]
        return [
            {"source": r.source, "code": r.error.code if r.error else "INTERNAL"}
            for r in failed[:limit]
        ]

    @property
    def failed(self) -> bool:
        return self.count(Action.FAILED) > 0 or bool(self.errors) or bool(self.settings_refused)

    def summary(self) -> dict[str, int]:
        return {
            **{str(a): self.count(a) for a in Action},
            "bytes": sum(r.bytes for r in self.images),
            "blobs_uploaded": sum(r.blobs_copied for r in self.images),
            "blobs_mounted": sum(r.blobs_mounted for r in self.images),
            "upstream_manifest_gets": sum(r.upstream_manifest_gets for r in self.images),
            "not_due": self.not_due,
            "events_sent": self.events_sent,
            "events_failed": self.events_failed,
            "invalid_tags_dropped": sum(self.dropped_tags.values()),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "command": self.command,
            "mirror_version": __version__,
            "config": self.config_source,
            "run_id": self.run_id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "seconds": round(self.seconds, 3),
            "summary": self.summary(),
            "registries": [{**asdict(r), "pulls": r.pulls} for r in self.registries],
            "dropped_tags": self.dropped_tags,
            "errors": [asdict(e) for e in self.errors],
            "blob_mounting": self.blob_mounting,
            "unowned_repositories": self.unowned_repositories,
            "settings_refused": [asdict(r) for r in self.settings_refused],
            "restored": self.restored,
            "replicas_filled": self.replicas_filled,
            "images": [r.to_json() for r in self.images],
        }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class Reportable(Protocol):
    def to_json(self) -> dict[str, Any]: ...


def check_report_path(path: Path) -> None:
    """Before any work: a report that cannot be written is a command-line error (exit 2),
    not a surprise after a long pass."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--report {path}: is a directory; give a file path")
    if not parent.exists():  # a typo in a path is not a reason to create directories
        raise ConfigError(
            f"--report {path}: the directory {parent} does not exist",
            hint="create it first, or give a path in an existing directory",
        )
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--report {path}: {parent} is not a writable directory")


def write_report(report: Reportable, path: Path) -> None:
    """Write atomically: a reader never sees half a report, and a failure leaves no file."""
    try:
        atomic_write(path, mask(json.dumps(report.to_json(), indent=2)) + "\n")
    except OSError as exc:
        raise MirrorError(f"--report {path}: {exc.strerror or exc}") from None
