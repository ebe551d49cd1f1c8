"""Which upstream registries ECR's pull-through cache can serve, and under what names.

Data about AWS, not code that calls it: the config checks `mode: pull-through-cache`
against it when it loads, and mirror/aws/ptc.py names the rule's upstream from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.oci.grammar import ecr_registry_region

__all__ = ["CacheableUpstream", "ptc_upstream"]


@dataclass(frozen=True)
class CacheableUpstream:
    """How ECR names an upstream registry it can cache."""

    registry: str  # the UpstreamRegistry enum value
    url: str  # upstreamRegistryUrl
    needs_credentials: bool


_SUPPORTED = {
    "docker.io": CacheableUpstream("docker-hub", "registry-1.docker.io", True),
    "ghcr.io": CacheableUpstream("github-container-registry", "ghcr.io", True),
    "registry.gitlab.com": CacheableUpstream(
        "gitlab-container-registry", "registry.gitlab.com", True
    ),
    "cgr.dev": CacheableUpstream("chainguard", "cgr.dev", True),
    "quay.io": CacheableUpstream("quay", "quay.io", False),
    "registry.k8s.io": CacheableUpstream("k8s", "registry.k8s.io", False),
    "public.ecr.aws": CacheableUpstream("ecr-public", "public.ecr.aws", False),
}


def ptc_upstream(host: str) -> CacheableUpstream | None:
    """ECR's name for `host` as a pull-through-cache upstream, or None if it has none."""
    if host.endswith(".azurecr.io"):
        return CacheableUpstream("azure-container-registry", host, True)
    if ecr_registry_region(host):  # another private ECR registry: ECR pulls with a role
        return CacheableUpstream("ecr", host, False)
    return _SUPPORTED.get(host)
