"""Real registries' reported behaviours, round 2, each rebuilt in front of the real
docker-registry and run end to end through `mirror sync`, with skopeo checking what was
written. The public report behind each behaviour is cited beside its test.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import skopeo
from tests.support.ecr_front import EcrFront
from tests.support.hostile import HostileFront
from tests.support.images import OCI_CONFIG, OCI_MANIFEST, Image, Index, random_blob
from tests.support.quirks import ArtifactoryFront, HeadQuirkFront, ThrottlingFront

pytestmark = pytest.mark.e2e

MIB = 2**20
HUB = "mirror/docker-hub/library"


def registry_config(write_config, target, host: str, url: str, images: str, extra: str = ""):
    return write_config(
        target,
        images,
        extra=f"registries:\n  {host}:\n    url: {url}\n{extra}",
        name=f"{host}.yaml",
    )


# --- A CDN that cuts large blobs ---------------------------------------------------------
# registry.k8s.io#333 (a CDN resetting large layer downloads), anchore/stereoscope#695
# (mcr's 4 GB Windows layers); containers/image's docker/body_reader.go resumes with Range.


def test_a_cdn_that_cuts_a_large_blob_is_resumed_from_where_it_stopped(
    hub, target, seeder, mirror, write_config
):
    layer = random_blob(5 * MIB)
    digest = seeder.push("library/nginx", "1.16", Image([layer]))
    part = 3 * MIB // 2
    hub.cut_every = part  # every answer stops after 1.5 MiB: 4 connections for the layer

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")
    # Every byte crossed the CDN once: no attempt started again at byte 0.
    assert hub.cdn_bytes[layer.digest] == len(layer.data)
    assert [r for r in hub.cdn_ranges if r] == [f"bytes={n * part}-" for n in (1, 2, 3)]
    assert run.image("nginx:1.16")["blobs_copied"] == 2  # one upload each, completed once


def test_an_expired_presigned_url_is_resumed_through_the_registry(
    hub, target, seeder, mirror, write_config
):
    # A presigned CDN URL that expired answers 403: the registry hands out a fresh one.
    layer = random_blob(5 * MIB)
    digest = seeder.push("library/nginx", "1.16", Image([layer]))
    hub.cut_every = 2 * MIB
    hub.single_use_urls = True

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    assert hub.cdn_bytes[layer.digest] == len(layer.data)
    assert hub.counters.blob_redirects == 2 + 2  # config and layer, then once per resume


def test_a_server_that_ignores_range_is_read_past_what_was_already_copied(
    hub, target, seeder, mirror, write_config
):
    layer = random_blob(4 * MIB)
    digest = seeder.push("library/nginx", "1.16", Image([layer]))
    hub.cut_next_blobs = 2  # the first answer of each blob stops halfway
    hub.cdn_ignores_range = True  # and the resumed request gets the whole blob (200)

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")
    assert hub.cdn_bytes[layer.digest] == len(layer.data) + len(layer.data) // 2


def test_a_resumed_answer_from_another_offset_is_refused_and_nothing_is_written(
    hub, target, seeder, mirror, write_config
):
    # Hostile: a 206 whose Content-Range starts at 0 would splice the blob's start into
    # its middle. The digest would catch it; the range check refuses it before a byte.
    layer = random_blob(3 * MIB)
    seeder.push("library/nginx", "1.16", Image([layer]))
    hub.cut_every = 2 * MIB
    hub.cdn_range_offset = 0

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 1
    error = run.image("nginx:1.16")["error"]
    assert error["code"] == "INVALID_UPSTREAM_DATA"
    assert f"asked for bytes from {2 * MIB}" in error["message"]
    with httpx.Client(base_url=target.url) as http:
        assert http.head(f"/v2/{HUB}/nginx/manifests/1.16").status_code == 404
        assert http.head(f"/v2/{HUB}/nginx/blobs/{layer.digest}").status_code == 404


def test_a_download_cut_again_and_again_fails_naming_the_upstream(
    hub, target, seeder, mirror, write_config
):
    layer = random_blob(2_000_000)
    seeder.push("library/nginx", "1.16", Image([layer]))
    hub.cut_every = 200_000  # each connection brings too little to earn many more

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 1
    error = run.image("nginx:1.16")["error"]
    assert error["code"] == "DOWNLOAD_CUT"
    assert error["message"].startswith(f"docker.io: blob {layer.digest}: the download was cut")
    assert "at byte 800000 of 2000000 after 3 reconnects" in error["message"]
    assert target.host not in error["message"]


# --- Throttles are not quotas ------------------------------------------------------------
# public.ecr.aws: about 1 request a second anonymous, 10 signed in, answered
# `429 toomanyrequests: Rate exceeded` with no rate-limit headers (aws/aws-lambda-web-
# adapter#429, a maintainer's answer; ECR Public service quotas).


def seed_public(seeder, count: int) -> dict[str, str]:
    return {
        f"docker/library/app{n}:1": seeder.push(
            f"docker/library/app{n}", "1", Image([random_blob(1000)])
        )
        for n in range(count)
    }


def test_public_ecr_is_paced_to_its_documented_rate_instead_of_deferred(
    upstream, target, seeder, mirror, write_config
):
    digests = seed_public(seeder, 2)
    images = "\n".join(f"- public.ecr.aws/{ref}" for ref in digests)
    with ThrottlingFront(upstream.url, per_second=1.0, burst=2) as ecr_public:
        config = registry_config(write_config, target, "public.ecr.aws", ecr_public.url, images)

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    for ref, digest in digests.items():
        assert skopeo.raw_digest(target.host, f"mirror/ecr-public/{ref}") == digest
    assert ecr_public.throttled <= 1
    assert ecr_public.busiest_second() <= 2


def test_a_registry_that_throttles_teaches_mirror_its_rate(
    upstream, target, seeder, mirror, write_config
):
    digests = seed_public(seeder, 6)
    images = "\n".join(f"- quay.io/{ref}" for ref in digests)
    with ThrottlingFront(upstream.url, per_second=5.0, burst=5) as quay:
        config = registry_config(write_config, target, "quay.io", quay.url, images)

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert {i["action"] for i in run.report["images"]} == {"copied"}
    for ref, digest in digests.items():
        assert skopeo.raw_digest(target.host, f"mirror/quay/{ref}") == digest
    # The first burst meets 429s; the rate learnt from them keeps the rest under the limit.
    assert 0 < quay.throttled <= 12
    assert quay.throttled < len(quay.served) / 2


def test_a_registry_still_throttling_at_max_wait_fails_the_sync(
    upstream, target, seeder, mirror, write_config
):
    digests = seed_public(seeder, 1)
    images = "\n".join(f"- public.ecr.aws/{ref}" for ref in digests)
    with ThrottlingFront(upstream.url) as ecr_public:
        ecr_public.always = True
        config = registry_config(write_config, target, "public.ecr.aws", ecr_public.url, images)

        run = mirror("sync", "--max-wait", "3", config=config)

    assert run.code == 1  # not `deferred` with exit 0: no quota window will end this
    result = run.image("app0:1")
    assert result["action"] == "failed"
    assert result["error"]["code"] == "THROTTLED"
    assert "requests_per_second" in result["error"]["hint"]


# --- Docker Hub's other names ------------------------------------------------------------
# containerd#12053, open-horizon/anax#2316: index.docker.io and registry-1.docker.io.


@pytest.mark.parametrize("alias", ["index.docker.io", "registry-1.docker.io"])
def test_a_registries_key_under_docker_hubs_other_names_is_docker_io(
    hub, hub_account, target, seeder, mirror, write_config, alias
):
    hub_account("tok-1")
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    credentials = "    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}\n"
    config = registry_config(write_config, target, alias, hub.url, "- nginx:1.16", credentials)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    (registry,) = run.report["registries"]
    assert registry["registry"] == "docker.io"
    assert registry["credentials"][0]["credential"] == "account ci-bot"  # not anonymous
    assert "no image comes from" not in run.out + run.err


def test_docker_hub_configured_under_two_names_is_refused(target, mirror, write_config):
    extra = "  index.docker.io:\n    rate_limit: {reserve: 5}\n"
    config = registry_config(
        write_config, target, "docker.io", "http://127.0.0.1:9", "- nginx:1.16", extra
    )

    run = mirror("validate", config=config)

    assert run.code == 2
    assert ":8: registries: index.docker.io is Docker Hub, which line 6 already" in run.err
    assert "keep one entry, under docker.io" in run.err


# --- Pagination that leaves the repository ------------------------------------------------
# Artifactory's tag-list Link drops the repository key (RTFACT-18971; renovate's
# workaround keeps the path and takes `last` and `n` from the link).


def test_tag_pages_of_an_artifactory_remote_stay_in_its_repository(
    upstream, target, seeder, mirror, write_config
):
    digests = {
        tag: seeder.push("library/python", tag, Image([random_blob(500)]))
        for tag in ("3.9.1", "3.10.4", "3.11.9", "3.12.7", "3.13.1")
    }
    images = """\
    - image: artifactory.example.com/docker-remote/library/python
      tags: {semver: ">=3.10", latest: 2}
    """
    with ArtifactoryFront(upstream.url) as artifactory:
        config = registry_config(
            write_config, target, "artifactory.example.com", artifactory.url, images
        )

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    for tag in ("3.13.1", "3.12.7"):
        ref = f"mirror/artifactory.example.com/docker-remote/library/python:{tag}"
        assert skopeo.raw_digest(target.host, ref) == digests[tag]
    listed = [p for m, p in artifactory.calls if "tags/list" in p]
    assert len(listed) == 3  # five tags, two a page
    assert all(p.startswith("/v2/docker-remote/library/python/tags/list") for p in listed)


# --- HEAD that proves nothing --------------------------------------------------------------
# Nexus answers a manifest HEAD with an HTML 404, others with 405 (andrey-pohilko/
# registry-cli#14, distribution#1485); go-containerregistry's remote.Head falls back to GET.


@pytest.mark.parametrize("head", ["405", "nexus"])
def test_a_registry_whose_head_lies_is_asked_with_one_get(
    upstream, target, seeder, mirror, write_config, head
):
    digest = seeder.push("library/alpine", "3.20", Image([random_blob(1000)]))
    images = """\
    - nexus.example.com/library/alpine:3.20
    - nexus.example.com/library/alpine:missing
    """
    with HeadQuirkFront(upstream.url, head=head) as nexus:
        config = registry_config(write_config, target, "nexus.example.com", nexus.url, images)

        first = mirror("sync", config=config)
        gets_first = nexus.manifest_gets
        second = mirror("sync", config=config)

    assert first.code == 1  # the missing tag, and only it
    assert skopeo.raw_digest(target.host, "mirror/nexus.example.com/library/alpine:3.20") == digest
    assert first.image("alpine:3.20")["action"] == "copied"
    assert first.image("alpine:3.20")["upstream_manifest_gets"] == 1  # the check's GET, reused
    missing = first.image("alpine:missing")["error"]
    assert missing["code"] == "MANIFEST_UNKNOWN" and "not found upstream" in missing["message"]
    assert gets_first == 2  # one for each image: the GET the HEAD could not replace
    assert second.image("alpine:3.20")["action"] == "skipped"
    assert nexus.manifest_gets == gets_first + 2


def test_docker_hubs_working_head_spends_no_pull_on_a_missing_tag(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))

    run = mirror("sync", config=write_config(target, "- nginx:nope", docker_io=hub.url))

    assert run.code == 1
    assert run.image("nginx:nope")["error"]["code"] == "MANIFEST_UNKNOWN"
    assert hub.counters.manifest_gets == 0


# --- A manifest without a type --------------------------------------------------------------
# containers/image#58: an OCI manifest without `mediaType` (a SHOULD in the image spec),
# served as application/json; containers/image guesses the type from the structure.


def test_a_manifest_without_media_type_served_as_json_is_copied_as_what_it_is(
    upstream, target, seeder, mirror, write_config
):
    layer, config_blob = random_blob(1000), random_blob(100, OCI_CONFIG)
    for blob in (layer, config_blob):
        seeder.blob("tools/app", blob)
    body = json.dumps(
        {"schemaVersion": 2, "config": config_blob.descriptor(), "layers": [layer.descriptor()]}
    ).encode()
    with HostileFront(upstream.url) as quirky:
        digest = quirky.serve_manifest("tools/app:1", body, "application/json")
        config = registry_config(
            write_config,
            target,
            "quirky.example.com",
            quirky.url,
            "- quirky.example.com/tools/app:1",
        )

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    reference = "mirror/quirky.example.com/tools/app:1"
    assert skopeo.raw_manifest(target.host, reference) == body  # bytes, so digest, kept
    assert skopeo.raw_digest(target.host, reference) == digest
    with httpx.Client(base_url=target.url) as http:
        pushed = http.head(
            "/v2/mirror/quirky.example.com/tools/app/manifests/1", headers={"Accept": OCI_MANIFEST}
        )
    assert pushed.headers["content-type"] == OCI_MANIFEST


# --- A target that has not caught up -------------------------------------------------------
# openshift/image-registry#220: MANIFEST_BLOB_UNKNOWN once, right after the blob uploads.


def test_a_manifest_refused_once_for_blobs_just_uploaded_is_pushed_again(
    hub, target, seeder, mirror, write_config
):
    index = Index([Image([random_blob(800)]), Image([random_blob(800)], architecture="arm64")])
    digest = seeder.push("library/nginx", "1.16", index)
    with EcrFront(target.url) as lagging:
        lagging.unseen_once = True
        config = write_config(lagging, "- nginx:1.16", docker_io=hub.url)

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert len(lagging.unseen) == 3  # both children and the index, each refused once
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")


# --- An anonymous token refused -------------------------------------------------------------
# GHCR answers 401 to an anonymous token request for a private or misspelt package.


def test_an_anonymous_token_refused_says_check_the_name_not_the_password(
    hub, target, seeder, mirror, write_config
):
    seeder.push("org/private", "1", Image([random_blob(100)]))
    hub.anonymous_denied = True
    config = registry_config(write_config, target, "ghcr.io", hub.url, "- ghcr.io/org/private:1")

    run = mirror("sync", config=config)

    assert run.code == 1
    error = run.image("private:1")["error"]
    assert error["code"] == "NOT_FOUND_OR_DENIED"
    assert "check the image name; the package may be private" in error["hint"]
    assert "username and password" not in run.out + run.err


# --- One GET per digest --------------------------------------------------------------------


def test_tags_of_one_digest_cost_the_pulls_of_one(hub, target, seeder, mirror, write_config):
    index = Index([Image([random_blob(800)]), Image([random_blob(800)], architecture="arm64")])
    tags = ["3.12-slim", "3.12.8-slim", "3-slim", "slim"]
    for tag in tags:
        digest = seeder.push("library/python", tag, index)
    images = f"- image: python\n  tags: {json.dumps(tags)}"

    run = mirror("sync", config=write_config(target, images, docker_io=hub.url))

    assert run.code == 0, run.out
    for tag in tags:
        assert skopeo.raw_digest(target.host, f"{HUB}/python:{tag}") == digest
    assert hub.counters.manifest_gets == 3  # the index and its two children, once
    assert sum(i["upstream_manifest_gets"] for i in run.report["images"]) == 3
