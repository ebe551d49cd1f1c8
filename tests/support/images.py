"""Build sample images and push them with a tiny client of its own.

Seeding deliberately does not use mirror's code, so a bug there cannot hide itself.
Layers are random bytes (incompressible, like real gzip layers); no tool here unpacks them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import httpx

__all__ = ["Blob", "Image", "Index", "Seeder", "random_blob"]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
IN_TOTO = "application/vnd.in-toto+json"
# Without all four, distribution answers 404 for OCI content (measured on docker-registry 2.8).
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "size": len(self.data), "digest": self.digest}


def random_blob(size: int, media_type: str = DOCKER_LAYER) -> Blob:
    return Blob(os.urandom(size), media_type)


@dataclass
class Image:
    """A single-platform image; `oci=True` uses OCI media types instead of Docker's."""

    layers: list[Blob]
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""
    oci: bool = False
    extra_config: dict[str, object] = field(default_factory=dict)

    @property
    def config(self) -> Blob:
        body = {
            "architecture": self.architecture,
            "os": self.os,
            **({"variant": self.variant} if self.variant else {}),
            "rootfs": {"type": "layers", "diff_ids": [b.digest for b in self.layers]},
            "config": {},
            **self.extra_config,
        }
        return Blob(json.dumps(body).encode(), OCI_CONFIG if self.oci else DOCKER_CONFIG)

    @property
    def manifest(self) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST if self.oci else DOCKER_MANIFEST,
            "config": self.config.descriptor(),
            "layers": [layer.descriptor() for layer in self.layers],
        }
        return json.dumps(body, indent=3).encode()

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST if self.oci else DOCKER_MANIFEST

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    def platform(self) -> dict[str, str]:
        found = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            found["variant"] = self.variant
        return found


@dataclass
class Index:
    """A Docker manifest list, or an OCI index with optional BuildKit attestations."""

    images: list[Image]
    oci: bool = False
    attestations: bool = False

    def attestation_for(self, image: Image) -> Image:
        statement = Blob(json.dumps({"subject": image.digest}).encode(), IN_TOTO)
        return Image([statement], os="unknown", architecture="unknown", oci=True)

    def _entries(self) -> list[tuple[Image, dict[str, object]]]:
        entries: list[tuple[Image, dict[str, object]]] = []
        for image in self.images:
            entries.append(
                (
                    image,
                    {
                        "mediaType": image.media_type,
                        "size": len(image.manifest),
                        "digest": image.digest,
                        "platform": image.platform(),
                    },
                )
            )
        if self.attestations:
            for image in self.images:
                att = self.attestation_for(image)
                entries.append(
                    (
                        att,
                        {
                            "mediaType": OCI_MANIFEST,
                            "size": len(att.manifest),
                            "digest": att.digest,
                            "platform": {"architecture": "unknown", "os": "unknown"},
                            "annotations": {
                                "vnd.docker.reference.digest": image.digest,
                                "vnd.docker.reference.type": "attestation-manifest",
                            },
                        },
                    )
                )
        return entries

    @property
    def children(self) -> list[Image]:
        return [image for image, _ in self._entries()]

    @property
    def manifest(self) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX if self.oci else DOCKER_LIST,
            "manifests": [descriptor for _, descriptor in self._entries()],
        }
        return json.dumps(body, indent=3).encode()

    @property
    def media_type(self) -> str:
        return OCI_INDEX if self.oci else DOCKER_LIST

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


class Seeder:
    """Pushes blobs and manifests to an unauthenticated registry (the test upstream)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None) -> None:
        self._http = httpx.Client(base_url=url, timeout=60, auth=auth)

    def close(self) -> None:
        self._http.close()

    def blob(self, repository: str, blob: Blob) -> None:
        if self._http.head(f"/v2/{repository}/blobs/{blob.digest}").status_code == 200:
            return
        started = self._http.post(f"/v2/{repository}/blobs/uploads/")
        started.raise_for_status()
        location = httpx.URL(started.headers["location"])
        url = self._http.base_url.join(location).copy_merge_params({"digest": blob.digest})
        self._http.put(url, content=blob.data).raise_for_status()

    def manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> None:
        self._http.put(
            f"/v2/{repository}/manifests/{reference}",
            content=raw,
            headers={"Content-Type": media_type},
        ).raise_for_status()

    def push(self, repository: str, tag: str, item: Image | Index) -> str:
        """Push an image or an index (children by digest first) and tag it; returns its digest."""
        if isinstance(item, Index):
            for child in item.children:
                self.push(repository, child.digest, child)
        else:
            for blob in item.blobs():
                self.blob(repository, blob)
        self.manifest(repository, tag, item.manifest, item.media_type)
        return item.digest


COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"


@dataclass(frozen=True)
class Attached:
    signature: str  # digest of the cosign `.sig` manifest
    sbom: str  # digest of the OCI referrer
    tag_index: str  # digest of the `sha256-<hex>` fallback index


def attach_signature_and_sbom(seeder: Seeder, repository: str, subject: Image | Index) -> Attached:
    """What `cosign sign` (legacy tag) and `oras attach --artifact-type application/spdx+json`
    leave on a registry without the referrers API, as the distribution 2.8 here is."""
    tag = "sha256-" + subject.digest.removeprefix("sha256:")
    payload = Blob(
        json.dumps({"critical": {"image": {"docker-manifest-digest": subject.digest}}}).encode(),
        COSIGN_SIMPLESIGNING,
    )
    config = Blob(b'{"architecture":"","os":""}', OCI_CONFIG)
    for blob in (payload, config):
        seeder.blob(repository, blob)
    annotation = {"dev.cosignproject.cosign/signature": "MEUCIQ-not-a-real-signature"}
    layer = {**payload.descriptor(), "annotations": annotation}
    signature = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer],
        }
    ).encode()
    seeder.manifest(repository, f"{tag}.sig", signature, OCI_MANIFEST)

    empty, sbom = Blob(b"{}", OCI_EMPTY), Blob(b'{"spdxVersion":"SPDX-2.3"}', SPDX)
    for blob in (empty, sbom):
        seeder.blob(repository, blob)
    subject_descriptor = {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": len(subject.manifest),
    }
    referrer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SPDX,
            "config": empty.descriptor(),
            "layers": [sbom.descriptor()],
            "subject": subject_descriptor,
        }
    ).encode()
    seeder.manifest(repository, digest_of(referrer), referrer, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest_of(referrer),
                    "size": len(referrer),
                    "artifactType": SPDX,
                }
            ],
        }
    ).encode()
    seeder.manifest(repository, tag, index, OCI_INDEX)
    return Attached(digest_of(signature), digest_of(referrer), digest_of(index))
