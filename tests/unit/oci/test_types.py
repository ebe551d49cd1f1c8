"""Manifests keep their bytes; platform filtering keeps the right children and attestations."""

import json

import pytest

from mirror.errors import UnsupportedError
from mirror.oci.types import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    UPSTREAM_DIGEST_ANNOTATION,
    Platform,
    PlatformFilter,
    parse_manifest,
    sha256_digest,
)
from tests.support.images import Image, Index, random_blob


def index_of(index: Index):
    return parse_manifest(index.manifest, index.media_type, index.digest)


def test_parsed_manifests_keep_their_exact_bytes():
    index = Index([Image([random_blob(10)])], oci=True)
    parsed = index_of(index)
    assert parsed.raw == index.manifest and parsed.digest == index.digest and parsed.is_index


def test_a_platform_filter_keeps_wanted_children_and_their_attestations_only():
    amd64 = Image([random_blob(10)], oci=True)
    arm64 = Image([random_blob(10)], architecture="arm64", variant="v8", oci=True)
    armv7 = Image([random_blob(10)], architecture="arm", variant="v7", oci=True)
    index = Index([amd64, arm64, armv7], oci=True, attestations=True)
    wanted = PlatformFilter((Platform.parse("linux/arm64"), Platform.parse("linux/arm/v7")))

    filtered = index_of(index).filtered(wanted)

    kept = [c.digest for c in filtered.children]
    assert kept == [
        arm64.digest,
        armv7.digest,
        index.attestation_for(arm64).digest,
        index.attestation_for(armv7).digest,
    ]
    assert filtered.upstream_digest == index.digest
    assert json.loads(filtered.raw)["annotations"][UPSTREAM_DIGEST_ANNOTATION] == index.digest
    assert filtered.digest == sha256_digest(filtered.raw) != index.digest


@pytest.mark.parametrize(
    ("wanted", "platform", "accepted"),
    [
        ("linux/arm64", Platform("linux", "arm64", "v8"), True),
        ("linux/arm64/v8", Platform("linux", "arm64"), True),
        ("linux/arm/v7", Platform("linux", "arm", "v6"), False),
        ("linux/arm", Platform("linux", "arm", "v6"), True),
        ("linux/amd64", Platform("windows", "amd64"), False),
    ],
)
def test_platform_matching(wanted, platform, accepted):
    assert PlatformFilter((Platform.parse(wanted),)).accepts(platform) is accepted


def test_an_index_without_media_type_is_recognised_from_its_body():
    raw = b'{"schemaVersion": 2, "manifests": []}'
    assert parse_manifest(raw, "application/json").media_type == OCI_INDEX


def test_schema1_and_unknown_types_are_refused_with_a_reason():
    raw = b'{"schemaVersion": 1, "name": "x"}'
    with pytest.raises(UnsupportedError, match=r"schema1 manifest.*pick a newer tag"):
        parse_manifest(raw, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(UnsupportedError, match="schema1 manifest"):  # recognised from its body
        parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}', "application/json")
    with pytest.raises(UnsupportedError, match="unsupported manifest media type 'text/plain'"):
        parse_manifest(b'{"schemaVersion": 2}', "text/plain")


CONFIG = {"size": 2, "digest": "sha256:" + "1" * 64}
LAYERS = [{"mediaType": "l", "size": 1, "digest": "sha256:" + "2" * 64}]


@pytest.mark.parametrize(
    ("config_type", "expected"),
    [
        ("application/vnd.oci.image.config.v1+json", OCI_MANIFEST),
        ("application/vnd.docker.container.image.v1+json", DOCKER_MANIFEST),
        (None, OCI_MANIFEST),
    ],
)
def test_a_manifest_without_media_type_served_as_json_is_recognised_from_its_body(
    config_type, expected
):
    # containers/image#58: the OCI manifest's mediaType is a SHOULD; a registry that
    # serves it as application/json says nothing more. containers/image guesses so too.
    config = dict(CONFIG, **({"mediaType": config_type} if config_type else {}))
    raw = json.dumps({"schemaVersion": 2, "config": config, "layers": LAYERS}).encode()
    manifest = parse_manifest(raw, "application/json; charset=utf-8")
    assert manifest.media_type == expected and manifest.raw == raw
    assert [b.digest[-1] for b in manifest.blobs] == ["1", "2"]


def test_a_written_media_type_is_never_guessed_over():
    raw = json.dumps({"mediaType": "application/x-odd", "config": CONFIG, "layers": []}).encode()
    with pytest.raises(UnsupportedError, match="application/x-odd"):
        parse_manifest(raw, "application/json")


def test_foreign_layers_with_urls_are_not_copied():
    body = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "c", "size": 1, "digest": "sha256:" + "1" * 64},
        "layers": [
            {"mediaType": "l", "size": 1, "digest": "sha256:" + "2" * 64},
            {"mediaType": "f", "size": 1, "digest": "sha256:" + "3" * 64, "urls": ["https://x"]},
        ],
    }
    manifest = parse_manifest(json.dumps(body).encode(), "")
    assert [b.digest[-1] for b in manifest.blobs] == ["1", "2"]
