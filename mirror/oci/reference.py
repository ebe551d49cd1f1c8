"""Image references, parsed and normalised the way Docker does it.

The canonical registry name (`docker.io`) is kept apart from the endpoint that serves it
(`https://registry-1.docker.io`), so config keys, reports and target names never change
when an endpoint is overridden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.errors import BadReferenceError
from mirror.oci.grammar import is_digest, is_host, is_repository, is_tag

__all__ = [
    "DEFAULT_REGISTRY",
    "DOCKER_HUB_ALIASES",
    "REGISTRY_ALIASES",
    "Reference",
    "default_endpoint",
    "parse_reference",
    "registry_alias",
]

DEFAULT_REGISTRY = "docker.io"
# Docker Hub's other names: its index, and the endpoint that serves it.
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")

# ECR pull-through-cache conventions for the upstream part of a target repository name.
REGISTRY_ALIASES = {
    "docker.io": "docker-hub",
    "quay.io": "quay",
    "ghcr.io": "github",
    "registry.k8s.io": "kubernetes",
    "public.ecr.aws": "ecr-public",
    "registry.gitlab.com": "gitlab",
}


@dataclass(frozen=True, order=True)
class Reference:
    """A fully qualified reference: registry, repository path, and a tag and/or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        """A Reference only ever holds grammar-checked parts: parse_reference says what is
        wrong with written text; this guards every other way one is built."""
        if not (
            is_host(self.registry)
            and is_repository(self.repository)
            and (self.tag is None or is_tag(self.tag))
            and (self.digest is None or is_digest(self.digest))
        ):
            raise ValueError(f"not a valid reference: {self!r}")

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What the registry is asked for: the digest when pinned, else the tag."""
        if self.digest:
            return self.digest
        assert self.tag is not None
        return self.tag

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def scope(self, actions: str = "pull") -> str:
        """The token scope that grants `actions` on this repository."""
        return f"repository:{self.repository}:{actions}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not is_host(first):
            raise BadReferenceError(f"invalid registry host {first!r} in {name!r}")
        registry = DEFAULT_REGISTRY if first in DOCKER_HUB_ALIASES else first
        return registry, rest
    return DEFAULT_REGISTRY, name


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse `nginx`, `quay.io/x/y:t` or `host:5000/a/b@sha256:...` into a Reference.

    `default_tag=None` leaves the tag empty when none is written (for entries whose tags
    come from a list or a rule).
    """
    original = text
    text = text.strip()
    if not text:
        raise BadReferenceError("empty image reference", hint="write e.g. nginx:1.27")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not is_digest(digest):
            raise BadReferenceError(
                f"invalid digest in {original!r}",
                hint="a digest is sha256:<64 lowercase hex> or sha512:<128 lowercase hex>",
            )
    registry, remainder = _split_registry(text)
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not is_tag(tag):
            raise BadReferenceError(
                f"invalid tag {tag!r} in {original!r}",
                hint="tags are ASCII letters, digits and . _ - (at most 128)",
            )
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"library/{remainder}"
    if not is_repository(remainder):
        raise BadReferenceError(
            f"invalid repository {remainder!r} in {original!r}",
            hint="repository names are lowercase letters, digits and separators . _ - /",
        )
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, remainder, tag, digest)


def default_endpoint(registry: str) -> str:
    """The URL that serves a canonical registry name when no `url:` overrides it."""
    if registry == DEFAULT_REGISTRY:
        return "https://registry-1.docker.io"
    return f"https://{registry}"


def registry_alias(registry: str) -> str:
    """The path component a registry gets in target names (ECR pull-through-cache style).

    Unknown hosts keep their name; a port becomes `-<port>` because `:` is not allowed in a
    repository path.
    """
    alias = REGISTRY_ALIASES.get(registry, registry)
    return re.sub(r"[^a-z0-9.]+", "-", alias.lower()).strip("-.")
