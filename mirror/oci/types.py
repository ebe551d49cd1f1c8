"""Media types, descriptors and manifests as pure data, apart from the protocol.

A Manifest keeps its raw bytes: with `platforms: all` those bytes are pushed unchanged,
which is what keeps the target digest equal to the upstream one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import IntegrityError, UnsupportedError

__all__ = [
    "ACCEPT_MANIFESTS",
    "ATTESTATION_ANNOTATION",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "UPSTREAM_DIGEST_ANNOTATION",
    "Descriptor",
    "Manifest",
    "Platform",
    "PlatformFilter",
    "parse_manifest",
    "sha256_digest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
# Without all four, distribution answers 404 for OCI content and downgrades Docker
# manifests to schema1 (a different digest).
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# BuildKit marks attestation manifests in an index with these annotations.
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_SUBJECT_ANNOTATION = "vnd.docker.reference.digest"
# Written into a platform-filtered index so a later run can tell it is up to date
# without pulling the upstream index again.
UPSTREAM_DIGEST_ANNOTATION = "io.github.mirror.upstream-digest"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: write os/arch or os/arch/variant")
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normal_variant(architecture: str, variant: str) -> str:
    return variant or ("v8" if architecture == "arm64" else "")


@dataclass(frozen=True)
class PlatformFilter:
    """The platforms a user asked for; a written variant must match, an omitted one need not."""

    wanted: tuple[Platform, ...]

    def accepts(self, platform: Platform | None) -> bool:
        if platform is None:
            return False
        for want in self.wanted:
            if (want.os, want.architecture) != (platform.os, platform.architecture):
                continue
            if not want.variant or _normal_variant(
                want.architecture, want.variant
            ) == _normal_variant(platform.architecture, platform.variant):
                return True
        return False

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.wanted)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, dict):
            raise IntegrityError("malformed descriptor in manifest")
        try:
            platform_data = data.get("platform")
            platform = (
                Platform(
                    str(platform_data["os"]),
                    str(platform_data["architecture"]),
                    str(platform_data.get("variant", "")),
                )
                if isinstance(platform_data, dict)
                else None
            )
            return cls(
                media_type=str(data.get("mediaType", "")),
                digest=str(data["digest"]),
                size=int(data["size"]),
                platform=platform,
                annotations=dict(data.get("annotations") or {}),
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed descriptor in manifest: {exc}") from exc

    @property
    def is_attestation(self) -> bool:
        return ATTESTATION_ANNOTATION in self.annotations

    @property
    def attests(self) -> str | None:
        return self.annotations.get(ATTESTATION_SUBJECT_ANNOTATION)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index with its exact bytes and the digest of those bytes."""

    media_type: str
    raw: bytes
    digest: str
    body: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def children(self) -> list[Descriptor]:
        """Child manifests of an index (empty for an image manifest)."""
        if not self.is_index:
            return []
        return [Descriptor.from_json(d) for d in self.body.get("manifests") or []]

    @property
    def blobs(self) -> list[Descriptor]:
        """Config and layers of an image manifest (empty for an index).

        Foreign layers that carry `urls` are not stored in registries and are skipped.
        """
        if self.is_index:
            return []
        found = [Descriptor.from_json(self.body["config"])] if "config" in self.body else []
        for layer in self.body.get("layers") or []:
            descriptor = Descriptor.from_json(layer)
            if not descriptor.raw.get("urls"):
                found.append(descriptor)
        return found

    def filtered(self, platforms: PlatformFilter) -> Manifest:
        """An index with only the wanted platforms, and the attestations that cover them.

        The result records this index's digest so later runs can detect "unchanged" with
        a free HEAD upstream.
        """
        kept = [c for c in self.children if not c.is_attestation and platforms.accepts(c.platform)]
        kept_digests = {c.digest for c in kept}
        kept += [c for c in self.children if c.is_attestation and c.attests in kept_digests]
        order = {c.digest: i for i, c in enumerate(self.children)}
        kept.sort(key=lambda c: order[c.digest])
        body = dict(self.body)
        body["manifests"] = [c.raw for c in kept]
        body["annotations"] = {
            **(self.body.get("annotations") or {}),
            UPSTREAM_DIGEST_ANNOTATION: self.digest,
        }
        raw = json.dumps(body, indent=3).encode()
        return Manifest(self.media_type, raw, sha256_digest(raw), body)

    @property
    def upstream_digest(self) -> str | None:
        """For an index written by `filtered`, the upstream index it came from."""
        annotations = self.body.get("annotations") or {}
        value = annotations.get(UPSTREAM_DIGEST_ANNOTATION)
        return str(value) if value else None


def parse_manifest(raw: bytes, content_type: str, expected_digest: str | None = None) -> Manifest:
    """Parse manifest bytes; when `expected_digest` is given the bytes must hash to it."""
    digest = sha256_digest(raw)
    if expected_digest and expected_digest.startswith("sha256:") and digest != expected_digest:
        raise IntegrityError(
            f"manifest bytes hash to {digest}, expected {expected_digest}",
            hint="the registry served corrupt or substituted content; nothing was written",
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"manifest {digest} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise IntegrityError(f"manifest {digest} is not a JSON object")
    media_type = str(body.get("mediaType") or content_type.split(";")[0].strip())
    if "manifests" in body and media_type not in INDEX_TYPES:
        media_type = OCI_INDEX
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise UnsupportedError(
            f"unsupported manifest media type {media_type!r} for {digest}",
            hint="mirror copies Docker schema2 and OCI manifests and indexes",
        )
    return Manifest(media_type, raw, digest, body)
