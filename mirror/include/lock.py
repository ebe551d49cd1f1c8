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

from mirror.config import Config
from mirror.engine.naming import target_registry_name
from mirror.engine.sync import resolve_jobs
from mirror.engine.wiring import Clients
from mirror.errors import ConfigError, MirrorError, printable
from mirror.include.buildspec import Pull, local_names, replica_registries
from mirror.oci.grammar import ecr_registry_region, is_aws_region, is_digest, is_host
from mirror.oci.reference import Reference, parse_reference

__all__ = ["LOCK_VERSION", "build_lock", "check_lock_hosts", "pulls_from_lock", "read_lock"]

LOCK_VERSION = 1


def build_lock(config: Config, clients: Clients) -> tuple[dict[str, Any], list[str]]:
    """The lock document, and a problem per image that keeps it from being complete."""
    resolved = resolve_jobs(config, clients)
    jobs, failures = resolved.jobs, resolved.failures
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
        # Region -> replica registry: the same digests, pulled in the build's own Region.
        "replicas": replica_registries(config, clients.target_registry),
        "images": sorted(images, key=lambda i: (i["reference"], i["source"])),
    }
    return lock, problems


def _lock_image(image: Any, registry: str, where: str) -> tuple[Reference, Reference]:
    """(source, target) of one lock entry, every field grammar-checked: the target names
    the lock's registry and carries exactly the recorded digest."""
    if not isinstance(image, dict) or not all(
        isinstance(image.get(k), str) for k in ("source", "target", "digest")
    ):
        raise ConfigError(f"{where}: each image needs source, target and digest strings")
    try:
        source = parse_reference(image["source"])
        target = parse_reference(image["target"])
    except MirrorError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    digest = image["digest"]
    if not is_digest(digest):
        raise ConfigError(f"{where}: invalid digest {printable(repr(digest), limit=100)}")
    if target.digest != digest or target.registry != registry:
        raise ConfigError(
            f"{where}: target {printable(repr(image['target']), limit=200)} is not "
            f"{registry}/<repository>@{digest}",
            hint="the lock was edited by hand or corrupted; regenerate it with mirror lock",
        )
    return source, target


def read_lock(path: Path) -> dict[str, Any]:
    """A lock file, refused (exit 2) unless every field passes the OCI grammar."""
    try:
        lock = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read lock {path}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path} is not a mirror lock (invalid JSON: {exc})") from None
    if not isinstance(lock, dict) or lock.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path} is not a version {LOCK_VERSION} mirror lock")
    registry = lock.get("registry")
    if not isinstance(registry, str) or not is_host(registry):
        raise ConfigError(f"{path}: registry must be a registry host name")
    replicas = lock.get("replicas") or {}
    if not isinstance(replicas, dict) or not all(
        isinstance(r, str) and is_aws_region(r) and isinstance(h, str) and is_host(h)
        for r, h in replicas.items()
    ):
        raise ConfigError(f"{path}: replicas must map AWS Regions to registry hosts")
    images = lock.get("images")
    if not isinstance(images, list):
        raise ConfigError(f"{path}: images must be a list with source, target and digest")
    for number, image in enumerate(images, start=1):
        _lock_image(image, registry, f"{path}: image {number}")
    return lock


def check_lock_hosts(lock: dict[str, Any], config: Config, path: Path) -> None:
    """A lock is a file in an application repository: anyone who can open a pull request
    can change it. The include logs in to and pulls from its hosts, so they must be the
    config's own: the target (for ECR without `target.registry`, an ECR host of the
    config's Region, the Region the login asks for) and its `replicate_to` replicas.
    ConfigError (exit 2) naming the host otherwise."""
    target = config.model.target
    registry = str(lock["registry"])
    hint = "regenerate the lock with `mirror lock` from this config"
    if target.registry or target.kind != "ecr":
        if registry != target_registry_name(config):
            raise ConfigError(f"{path}: registry {registry} is not the config's target", hint=hint)
    else:
        if ecr_registry_region(registry) != (target.region or ""):
            raise ConfigError(
                f"{path}: registry {registry} is not an ECR registry in {target.region}",
                hint=hint,
            )
    wanted = replica_registries(config, registry)
    for region, host in (lock.get("replicas") or {}).items():
        if wanted.get(region) != host:
            raise ConfigError(
                f"{path}: replica {host} ({region}) is not one of the config's replicate_to",
                hint=hint,
            )


def pulls_from_lock(lock: dict[str, Any]) -> tuple[list[Pull], list[str]]:
    """The include's pulls, pinned to the lock's digests, with no registry request."""
    registry = str(lock["registry"])
    pulls, warnings = [], []
    for number, image in enumerate(lock["images"], start=1):
        source, target = _lock_image(image, registry, f"lock image {number}")
        if source.tag is None:
            warnings.append(
                f"{source}: a digest pin cannot be tagged with the name a FROM uses; "
                "use --format build-context for it"
            )
            continue
        pulls.append(Pull(source, f"{target.repository}@{target.digest}", local_names(source)))
    return pulls, warnings
