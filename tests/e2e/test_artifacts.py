"""Signatures and SBOMs travel with the image: a cosign `.sig` tag and an OCI referrer
(found through the `sha256-<hex>` fallback tag) arrive with identical digests; with
`require`, an unsigned image is reported and the target is left as it was."""

from __future__ import annotations

import httpx
import pytest

from tests.support import skopeo
from tests.support.images import Image, attach_signature_and_sbom, random_blob

pytestmark = pytest.mark.e2e

TARGET = "mirror/docker-hub/library/app"


def target_digest(target, reference: str) -> str | None:
    answer = httpx.head(
        f"{target.url}/v2/{TARGET}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                           "application/vnd.oci.image.index.v1+json, "
                           "application/vnd.docker.distribution.manifest.v2+json"},
    )  # fmt: skip
    return answer.headers.get("docker-content-digest") if answer.status_code == 200 else None


def test_a_signature_tag_and_an_sbom_referrer_arrive_with_their_digests(
    hub, target, seeder, write_config, mirror
):
    image = Image([random_blob(100)])
    digest = seeder.push("library/app", "1.0", image)
    attached = attach_signature_and_sbom(seeder, "library/app", image)
    config = write_config(
        target, "- image: app\n  tags: ['1.0']\n  artifacts: {}", docker_io=hub.url
    )

    run = mirror("sync", config=config)

    assert run.code == 0, run.err
    tag = "sha256-" + digest.removeprefix("sha256:")
    assert target_digest(target, f"{tag}.sig") == attached.signature
    assert target_digest(target, attached.sbom) == attached.sbom
    assert target_digest(target, tag) == attached.tag_index  # the fallback index, verbatim
    skopeo.copy_all_verifies(target.host, f"{TARGET}:{tag}.sig")
    assert sorted(run.image("app:1.0")["artifacts"]) == [
        f"sbom {attached.sbom}",
        f"signature {tag}.sig",
    ]

    hub.reset_counters()
    again = mirror("sync", config=config)

    assert again.image("app:1.0")["action"] == "skipped"
    assert "artifacts" not in again.image("app:1.0")
    assert hub.counters.manifest_gets == 0  # artifacts already there: HEADs only


def test_referrers_from_the_api_get_a_fallback_tag_in_a_target_without_it(
    hub, target, seeder, write_config, mirror
):
    hub.referrers_api = True  # the upstream answers /v2/<name>/referrers/<digest>
    image = Image([random_blob(100)])
    digest = seeder.push("library/app", "1.0", image)
    attached = attach_signature_and_sbom(seeder, "library/app", image)
    config = write_config(
        target, "- image: app\n  tags: ['1.0']\n  artifacts: {include: [sbom]}", docker_io=hub.url
    )

    assert mirror("sync", config=config).code == 0

    tag = "sha256-" + digest.removeprefix("sha256:")
    assert target_digest(target, attached.sbom) == attached.sbom
    index = httpx.get(
        f"{target.url}/v2/{TARGET}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    ).json()
    assert [m["digest"] for m in index["manifests"]] == [attached.sbom]
    assert target_digest(target, f"{tag}.sig") is None  # signatures were not asked for
    asked = {(r[0], r[1]) for r in hub.counters.requests}
    assert ("GET", f"/v2/library/app/referrers/{digest}") in asked
    assert ("GET", f"/v2/library/app/manifests/{tag}") not in asked  # the API, not the tag


def test_artifact_filters_choose_what_travels(hub, target, seeder, write_config, mirror):
    image = Image([random_blob(100)])
    digest = seeder.push("library/app", "1.0", image)
    attached = attach_signature_and_sbom(seeder, "library/app", image)
    config = write_config(
        target,
        "- image: app\n  tags: ['1.0']\n  artifacts: {include: ['*'], exclude: [sbom]}",
        docker_io=hub.url,
    )

    assert mirror("sync", config=config).code == 0

    tag = "sha256-" + digest.removeprefix("sha256:")
    assert target_digest(target, f"{tag}.sig") == attached.signature
    assert target_digest(target, attached.sbom) is None
    assert target_digest(target, tag) is None  # no referrer wanted, no fallback index


def test_require_without_a_signature_reports_the_image_and_writes_nothing(
    hub, target, seeder, write_config, mirror
):
    seeder.push("library/app", "1.0", Image([random_blob(100)]))
    config = write_config(
        target, "- image: app\n  tags: ['1.0']\n  artifacts: {require: true}", docker_io=hub.url
    )

    run = mirror("sync", config=config)

    assert run.code == 1
    failed = run.image("app:1.0")
    assert failed["action"] == "failed" and failed["error"]["code"] == "SIGNATURE_MISSING"
    assert target_digest(target, "1.0") is None
    assert hub.counters.manifest_gets == 0  # refused before any pull


def test_require_with_a_signature_mirrors_the_image(hub, target, seeder, write_config, mirror):
    image = Image([random_blob(100)])
    digest = seeder.push("library/app", "1.0", image)
    attach_signature_and_sbom(seeder, "library/app", image)
    config = write_config(
        target, "- image: app\n  tags: ['1.0']\n  artifacts: {require: true}", docker_io=hub.url
    )

    run = mirror("sync", config=config)

    assert run.code == 0, run.err
    assert target_digest(target, "1.0") == digest


def test_an_immutable_tag_with_artifacts_is_not_asked_again(
    hub, target, seeder, write_config, mirror
):
    image = Image([random_blob(100)])
    seeder.push("library/app", "v1.0.0", image)
    attach_signature_and_sbom(seeder, "library/app", image)
    config = write_config(
        target,
        "- image: app\n  tags: [v1.0.0]\n  immutable_tags: ['v*']\n  artifacts: {}",
        docker_io=hub.url,
    )
    assert mirror("sync", config=config).code == 0
    hub.reset_counters()

    again = mirror("sync", config=config)

    assert again.image("app:v1.0.0")["action"] == "skipped"
    assert hub.counters.requests == []
