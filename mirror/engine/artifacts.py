"""Artifacts attached to a mirrored image, copied after it with their digests intact so
signatures still verify against the mirror:

- OCI 1.1 referrers, manifests whose `subject` is the image: found through the referrers
  API, or on registries without it through the `sha256-<hex>` tag that holds an index of
  them (the OCI fallback tag schema);
- cosign's legacy tags `sha256-<hex>.sig`, `.att` and `.sbom`.

Discovery costs HEADs and the referrers API, which rate limits do not count; only an
artifact the target lacks is pulled. A target without the referrers API gets the
fallback tag, so tools find the artifacts there the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mirror.config.model import ArtifactSettings
from mirror.engine.copy import CopyJob, ImageCopier
from mirror.engine.report import ImageResult
from mirror.engine.upstream import Upstream
from mirror.errors import MirrorError, NotFoundError
from mirror.oci.client import RegistryClient
from mirror.oci.types import OCI_INDEX, Descriptor, Manifest, sha256_digest

__all__ = ["ArtifactCopier", "SignatureMissingError", "kind_of", "referrers_tag"]

# Well-known artifactType values by kind, and cosign's legacy tag suffix for each.
KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "signature": (
        ".sig",
        frozenset(
            {
                "application/vnd.dev.cosign.artifact.sig.v1+json",
                "application/vnd.dev.sigstore.bundle.v0.3+json",
                "application/vnd.cncf.notary.signature",
            }
        ),
    ),
    "attestation": (
        ".att",
        frozenset(
            {
                "application/vnd.dsse.envelope.v1+json",
                "application/vnd.in-toto+json",
                "application/vnd.dev.cosign.artifact.att.v1+json",
            }
        ),
    ),
    "sbom": (
        ".sbom",
        frozenset(
            {
                "application/spdx+json",
                "text/spdx",
                "application/vnd.cyclonedx+json",
                "application/vnd.cyclonedx+xml",
                "application/vnd.syft+json",
                "application/vnd.dev.cosign.artifact.sbom.v1+json",
            }
        ),
    ),
}


class SignatureMissingError(MirrorError):
    code = "SIGNATURE_MISSING"


def kind_of(artifact_type: str) -> str:
    for kind, (_, types) in KINDS.items():
        if artifact_type in types:
            return kind
    return artifact_type


def referrers_tag(digest: str) -> str:
    """The OCI fallback tag for `digest`'s referrers: `<alg>-<hex>`, the algorithm cut to
    32 characters and the hex to 64 (distribution-spec, "Referrers Tag Schema"), so a
    sha512 digest still gives a valid tag."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm[:32]}-{hex_digest[:64]}"


def wants(policy: ArtifactSettings, kind: str, artifact_type: str = "") -> bool:
    names = {kind, artifact_type} - {""}
    included = "*" in policy.include or bool(names & set(policy.include))
    return included and not names & set(policy.exclude)


def artifact_type(descriptor: Descriptor) -> str:
    return str(descriptor.raw.get("artifactType") or "")


@dataclass
class _Found:
    referrers: list[Descriptor] = field(default_factory=list)
    tag_index: Manifest | None = None  # the upstream's fallback tag, when it has one


class ArtifactCopier:
    def __init__(self, copier: ImageCopier, target: RegistryClient) -> None:
        self._copier = copier
        self._target = target

    def _discover(
        self,
        upstream: Upstream,
        repository: str,
        digest: str,
        result: ImageResult,
        target_repository: str | None = None,
    ) -> _Found:
        """The referrers of `digest` upstream: through the API, else the fallback tag,
        which is not pulled when `target_repository` already holds the same one."""
        found = _Found()
        listed = upstream.get_referrers(repository, digest)
        if listed is not None:
            found.referrers = listed
            return found
        tag = referrers_tag(digest)
        head = upstream.head_manifest(repository, tag)
        if head is None or head.digest == digest:
            # GitLab resolves `sha256-<hex>` to the image itself: that is no referrers index.
            return found
        if target_repository is not None:
            have = self._target.head_manifest(target_repository, tag)
            if have is not None and have.digest == head.digest:
                return found
        found.tag_index = self._copier.pull(upstream, repository, head.digest or None, tag, result)
        found.referrers = found.tag_index.children
        return found

    def require_signature(
        self, job: CopyJob, upstream: Upstream, digest: str | None, result: ImageResult
    ) -> None:
        """ImageCopier's `before_copy`: with `artifacts.require`, an image whose signature
        is missing upstream fails before anything of it is written."""
        if job.artifacts is None or not job.artifacts.require:
            return
        if digest is None or not self.has_signature(
            upstream, job.source.repository, digest, result
        ):
            raise SignatureMissingError(
                f"{job.source} has no signature upstream, and artifacts.require is set",
                hint="sign it upstream (cosign or notation), or set artifacts.require: false",
            )

    def has_signature(
        self, upstream: Upstream, repository: str, digest: str, result: ImageResult
    ) -> bool:
        """For `require`: a cosign `.sig` tag (a free HEAD), or a signature referrer."""
        if upstream.head_manifest(repository, referrers_tag(digest) + ".sig") is not None:
            return True
        found = self._discover(upstream, repository, digest, result)
        return any(kind_of(artifact_type(d)) == "signature" for d in found.referrers)

    def copy(self, job: CopyJob, upstream: Upstream, digest: str, result: ImageResult) -> None:
        """Copy what `job.artifacts` asks for of `digest`'s artifacts, after the image."""
        policy = job.artifacts
        assert policy is not None
        target = job.target.repository
        tag = referrers_tag(digest)
        found = self._discover(upstream, job.source.repository, digest, result, target)
        chosen = [
            d for d in found.referrers if wants(policy, kind_of(artifact_type(d)), artifact_type(d))
        ]
        copied = []
        for descriptor in chosen:
            if self._copier.copy_child(job, upstream, descriptor, result):
                copied.append(f"{kind_of(artifact_type(descriptor))} {descriptor.digest}")
        if found.tag_index is not None:
            self._put_tag_index(target, tag, found.tag_index, chosen)
        elif copied and self._target.get_referrers(target, digest) is None:
            self._merge_tag_index(target, tag, chosen)
        copied += self._copy_cosign_tags(job, upstream, tag, policy, result)
        if copied:
            result.artifacts = (result.artifacts or []) + copied

    def _copy_cosign_tags(
        self,
        job: CopyJob,
        upstream: Upstream,
        tag: str,
        policy: ArtifactSettings,
        result: ImageResult,
    ) -> list[str]:
        copied = []
        source, target = job.source.repository, job.target.repository
        for kind, (suffix, _) in KINDS.items():
            if not wants(policy, kind):
                continue
            legacy = tag + suffix
            up = upstream.head_manifest(source, legacy)
            if up is None:
                continue
            have = self._target.head_manifest(target, legacy)
            if have is not None and have.digest == up.digest:
                continue
            manifest = self._copier.pull(upstream, source, up.digest or None, legacy, result)
            self._copier.copy_content(job, upstream, manifest, result)
            self._copier.put_manifest(target, legacy, manifest)
            result.manifests_pushed += 1
            copied.append(f"{kind} {legacy}")
        return copied

    def _put_tag_index(
        self, repository: str, tag: str, index: Manifest, chosen: list[Descriptor]
    ) -> None:
        """The upstream's fallback index as it is (same digest) when every referrer was
        wanted; else one listing only the ones copied."""
        if len(chosen) == len(index.children):
            self._copier.put_manifest(repository, tag, index)
        elif chosen:
            self._put_index(repository, tag, [d.raw for d in chosen])

    def _merge_tag_index(self, repository: str, tag: str, chosen: list[Descriptor]) -> None:
        """A target without the referrers API: add what was copied to its fallback tag."""
        try:
            existing = [d.raw for d in self._target.get_manifest(repository, tag).children]
        except NotFoundError:
            existing = []
        known = {str(d["digest"]) for d in existing}
        self._put_index(
            repository, tag, existing + [d.raw for d in chosen if d.digest not in known]
        )

    def _put_index(self, repository: str, tag: str, manifests: list[dict[str, object]]) -> None:
        body: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }
        raw = json.dumps(body, indent=3).encode()
        index = Manifest(OCI_INDEX, raw, sha256_digest(raw), body)
        self._copier.put_manifest(repository, tag, index)
