"""Where an upstream image lands in the target: `<registry>/<prefix>/<alias>/<path>:<tag>`."""

from __future__ import annotations

from urllib.parse import urlsplit

from mirror.config import Config
from mirror.oci.grammar import ecr_host
from mirror.oci.reference import Reference, registry_alias

__all__ = [
    "pin_tag",
    "pull_through_reference",
    "target_reference",
    "target_registry_name",
    "target_repository",
]


def target_registry_name(config: Config) -> str:
    """The target's name as configured; for ECR without `registry`, a placeholder until
    STS says which account this is."""
    target = config.model.target
    if target.registry:
        return target.registry
    if target.kind == "ecr":
        return ecr_host("ACCOUNT", target.region or "REGION")
    assert target.registry_url is not None
    return urlsplit(target.registry_url).netloc


def pin_tag(digest: str) -> str:
    """The tag that holds a digest-pinned image, so no lifecycle rule sees it as untagged.

    Not `sha256-<hex>`: that form is the OCI referrers tag schema (signatures, SBOMs).
    A sha512 digest's hex is cut to 64 characters, as the referrers tag schema cuts it,
    so the tag stays within the 128 characters a tag may have.
    """
    algorithm, _, hex_digest = digest.partition(":")
    return f"pin-{algorithm}-{hex_digest[:64]}"


def pull_through_reference(source: Reference, registry: str, rule_prefix: str) -> Reference:
    """Where ECR's pull-through cache serves `source`: `<rule prefix>/<upstream path>`."""
    return Reference(registry, f"{rule_prefix}/{source.repository}", source.tag, source.digest)


def target_repository(source: Reference, prefix: str) -> str:
    """The repository an upstream image lands in: `<prefix>/<alias>/<path>`."""
    parts = (prefix.strip("/"), registry_alias(source.registry), source.repository)
    return "/".join(p for p in parts if p)


def target_reference(source: Reference, registry: str, prefix: str) -> Reference:
    repository = target_repository(source, prefix)
    if source.tag:
        return Reference(registry, repository, source.tag)
    assert source.digest is not None
    return Reference(registry, repository, pin_tag(source.digest))
