"""Media types, descriptors and manifests as pure data, apart from the protocol.

A Manifest keeps its raw bytes: with `platforms: all` those bytes are pushed unchanged,
which is what keeps the target digest equal to the upstream one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import IntegrityError, InvalidUpstreamDataError, UnsupportedError, printable
from mirror.oci.grammar import is_tag, require_digest

__all__ = [
    "ACCEPT_MANIFESTS",
    "ATTESTATION_ANNOTATION",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "PLATFORMS_ANNOTATION",
    "SCHEMA1_TYPES",
    "UPSTREAM_DIGEST_ANNOTATION",
    "Descriptor",
    "Manifest",
    "Platform",
    "PlatformFilter",
    "TagList",
    "digest_of",
    "guess_media_type",
    "parse_json_object",
    "parse_manifest",
    "parse_tag_page",
    "sha256_digest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONTAINER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
# Docker's deprecated schema1, still served for very old tags; mirror does not copy it.
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    }
)
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
# ...and the platforms it keeps: a change of `platforms` is seen, and can be made from the
# target's own copy when it narrows.
PLATFORMS_ANNOTATION = "io.github.mirror.platforms"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(data: bytes, algorithm: str) -> str:
    """`data`'s digest with a registered algorithm (sha256 or sha512)."""
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from a registry; anything else (a list, HTML, a nesting bomb) fails."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidUpstreamDataError(
            f"{what}: not JSON ({printable(str(exc), limit=100)})"
        ) from None
    if not isinstance(body, dict):
        raise InvalidUpstreamDataError(f"{what}: not a JSON object")
    return body


@dataclass
class TagList:
    """The valid tags of a listing, and how the invalid ones it also held were written."""

    tags: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def extend(self, other: TagList) -> None:
        self.tags += other.tags
        self.dropped += other.dropped


def parse_tag_page(raw: bytes, what: str) -> TagList:
    """One `tags/list` page: `{"name": ..., "tags": [...] | null}`. A tag outside the
    grammar is dropped (skopeo skips them too), kept only as an escaped sample."""
    body = parse_json_object(raw, what)
    tags = body.get("tags")
    if tags is None:
        return TagList()
    if not isinstance(tags, list):
        raise InvalidUpstreamDataError(f"{what}: tags is not a list")
    page = TagList()
    for tag in tags:
        if isinstance(tag, str) and is_tag(tag):
            page.tags.append(tag)
        else:
            page.dropped.append(printable(repr(tag), limit=80))
    return page


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

    @classmethod
    def parse(cls, text: str) -> PlatformFilter:
        """`linux/amd64,linux/arm64`, as str() writes it."""
        return cls(tuple(Platform.parse(p) for p in text.split(",")))

    def covers(self, other: PlatformFilter) -> bool:
        """Whether every platform `other` wants, this one wants too."""
        return all(self.accepts(want) for want in other.wanted)

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
        """A descriptor from a manifest, index or referrers list: the digest must be a
        registered one and the size a non-negative integer, or the image fails."""
        if not isinstance(data, dict):
            raise InvalidUpstreamDataError("malformed descriptor in manifest: not an object")
        digest = require_digest(data.get("digest"), "descriptor in manifest")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
            raise InvalidUpstreamDataError(
                f"descriptor {digest}: invalid size {printable(repr(size), limit=40)}"
            )
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
            annotations = data.get("annotations") or {}
            return cls(
                media_type=str(data.get("mediaType", "")),
                digest=digest,
                size=size,
                platform=platform,
                annotations={str(k): str(v) for k, v in dict(annotations).items()},
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidUpstreamDataError(
                f"malformed descriptor {digest} in manifest: {printable(str(exc), limit=100)}"
            ) from None

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
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

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

    def filtered(self, platforms: PlatformFilter, upstream_digest: str | None = None) -> Manifest:
        """An index with only the wanted platforms, and the attestations that cover them.

        The result records the upstream index's digest (this one's, unless this is itself
        a filtered copy of it) and the platforms asked for, so later runs can tell it is up
        to date with a free HEAD upstream, and narrow it again without pulling it.
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
            UPSTREAM_DIGEST_ANNOTATION: upstream_digest or self.digest,
            PLATFORMS_ANNOTATION: str(platforms),
        }
        raw = json.dumps(body, indent=3).encode()
        return Manifest(self.media_type, raw, sha256_digest(raw), body)

    @property
    def upstream_digest(self) -> str | None:
        """For an index written by `filtered`, the upstream index it came from."""
        annotations = self.body.get("annotations") or {}
        value = annotations.get(UPSTREAM_DIGEST_ANNOTATION)
        return str(value) if value else None

    @property
    def kept_platforms(self) -> PlatformFilter | None:
        """For an index written by `filtered`, the platforms it was asked to keep (None for
        one written before mirror recorded them)."""
        value = (self.body.get("annotations") or {}).get(PLATFORMS_ANNOTATION)
        try:
            return PlatformFilter.parse(str(value)) if value else None
        except ValueError:
            return None


def guess_media_type(body: dict[str, Any]) -> str | None:
    """A manifest's type from its structure, for one that names none and is served as
    plain JSON (an OCI manifest's `mediaType` is only a SHOULD). As containers/image
    guesses: `manifests` is an index; `config` and `layers` a Docker schema2 manifest when
    the config is a Docker container config, else an OCI manifest; `fsLayers` schema1."""
    if "manifests" in body:
        return OCI_INDEX
    config = body.get("config")
    if isinstance(config, dict) and "layers" in body:
        if config.get("mediaType") == DOCKER_CONTAINER_CONFIG:
            return DOCKER_MANIFEST
        return OCI_MANIFEST
    if body.get("schemaVersion") == 1 and "fsLayers" in body:
        return "application/vnd.docker.distribution.manifest.v1+json"
    return None


def parse_manifest(raw: bytes, content_type: str, expected_digest: str | None = None) -> Manifest:
    """Parse manifest bytes; when `expected_digest` is given the bytes must hash to it with
    its own algorithm (sha256 or sha512; other algorithms are refused).

    The type is the body's `mediaType`, else the Content-Type, else (served as plain JSON)
    guessed from the structure; it is what the manifest is pushed as."""
    digest = sha256_digest(raw)
    if expected_digest:
        algorithm = require_digest(expected_digest, "manifest digest").partition(":")[0]
        got = digest_of(raw, algorithm)
        if got != expected_digest:
            raise IntegrityError(
                f"manifest bytes hash to {got}, expected {expected_digest}",
                hint="the registry served corrupt or substituted content; nothing was written",
            )
        digest = expected_digest
    body = parse_json_object(raw, f"manifest {digest}")
    media_type = str(body.get("mediaType") or content_type.split(";")[0].strip())
    if "manifests" in body and media_type not in INDEX_TYPES:
        media_type = OCI_INDEX
    if media_type not in INDEX_TYPES | MANIFEST_TYPES and not body.get("mediaType"):
        media_type = guess_media_type(body) or media_type
    if media_type in SCHEMA1_TYPES:
        raise UnsupportedError(
            f"{digest} is a Docker schema1 manifest",
            hint="schema1 is deprecated and mirror does not copy it; pick a newer tag",
        )
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise UnsupportedError(
            f"unsupported manifest media type {printable(repr(media_type), limit=100)} "
            f"for {digest}",
            hint="mirror copies Docker schema2 and OCI manifests and indexes",
        )
    return Manifest(media_type, raw, digest, body)
