"""`mirror lock`: every configured reference mapped to its mirror reference and digest,
for pinning and audits; `mirror buildspec --lock` renders the CodeBuild include from it.

The lock is read from the target only (HEADs, and a GET for a platform-filtered index
to read the upstream digest it records): it costs no upstream request. An image not yet
mirrored makes the lock incomplete, so it is not written at all.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mirror.buildspec import Pull, local_names
from mirror.config import Config
from mirror.errors import ConfigError, MirrorError
from mirror.oci.reference import parse_reference
from mirror.sync import resolve_jobs
from mirror.wiring import Clients

__all__ = ["LOCK_VERSION", "build_lock", "pulls_from_lock", "read_lock"]

LOCK_VERSION = 1


def build_lock(config: Config, clients: Clients) -> tuple[dict[str, Any], list[str]]:
    """The lock document, and a problem per image that keeps it from being complete."""
    jobs, failures = resolve_jobs(config, clients)
    problems = [f"{f.source}: {f.error.message if f.error else 'not resolved'}" for f in failures]
    images = []
    for job in jobs:
        target = job.target
        try:
            found = clients.target.head_manifest(target.repository, target.identifier)
            if found is None or not found.digest:
                problems.append(f"{job.written}: not mirrored yet ({target}); run mirror sync")
                continue
            upstream = found.digest
            if job.platforms is not None:  # a filtered index records where it came from
                written = clients.target.get_manifest(target.repository, found.digest)
                upstream = written.upstream_digest or found.digest
        except (MirrorError, httpx.HTTPError) as exc:
            problems.append(f"{job.written}: cannot read {target}: {exc}")
            continue
        images.append(
            {
                "reference": job.written,
                "source": str(job.source),
                "target": f"{target.name}@{found.digest}",
                "tag": str(target),
                "digest": found.digest,
                "upstream_digest": upstream,
                "platforms": str(job.platforms) if job.platforms else "all",
            }
        )
    lock = {
        "version": LOCK_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "registry": clients.target_registry,
        "images": sorted(images, key=lambda i: (i["reference"], i["source"])),
    }
    return lock, problems


def read_lock(path: Path) -> dict[str, Any]:
    try:
        lock = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read lock {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a mirror lock (invalid JSON: {exc})") from None
    if not isinstance(lock, dict) or lock.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path} is not a version {LOCK_VERSION} mirror lock")
    images = lock.get("images")
    keys = ("source", "target", "digest")
    if not isinstance(images, list) or not all(
        isinstance(i, dict) and all(isinstance(i.get(k), str) for k in keys) for i in images
    ):
        raise ConfigError(f"{path}: images must be a list with source, target and digest")
    return lock


def pulls_from_lock(lock: dict[str, Any]) -> tuple[list[Pull], list[str]]:
    """The include's pulls, pinned to the lock's digests, with no registry request."""
    registry = str(lock["registry"])
    pulls, warnings = [], []
    for image in lock["images"]:
        source = parse_reference(image["source"])
        if source.tag is None:
            warnings.append(
                f"{source}: a digest pin cannot be tagged with the name a FROM uses; "
                "use --format build-context for it"
            )
            continue
        path = image["target"].removeprefix(f"{registry}/")
        pulls.append(Pull(source, path, local_names(source)))
    return pulls, warnings
