"""`mirror sync` against real registries, every result checked with skopeo."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support import skopeo
from tests.support.images import Image, Index, random_blob

pytestmark = pytest.mark.e2e

HUB_PREFIX = "mirror/docker-hub/library"


def test_docker_schema2_image_is_copied_with_its_digest(hub, target, seeder, mirror, write_config):
    image = Image([random_blob(300_000), random_blob(1000)])
    digest = seeder.push("library/nginx", "1.16", image)
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out + run.err
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/nginx:1.16")
    result = run.image("nginx:1.16")
    assert result["action"] == "copied"
    assert result["upstream_digest"] == result["target_digest"] == digest
    assert result["blobs_copied"] == 3 and result["bytes"] == 301_000 + len(image.config.data)
    assert result["upstream_manifest_gets"] == 1
    assert hub.counters.blob_redirects == 3
    assert hub.counters.cdn_auth_rejections == 0


def test_oci_image_is_copied_with_its_digest(hub, target, seeder, mirror, write_config):
    digest = seeder.push("org/tool", "v1", Image([random_blob(5000)], oci=True))
    config = write_config(target, "- org/tool:v1", docker_io=hub.url)

    assert mirror("sync", config=config).code == 0
    assert skopeo.raw_digest(target.host, "mirror/docker-hub/org/tool:v1") == digest
    skopeo.copy_all_verifies(target.host, "mirror/docker-hub/org/tool:v1")


def _three_platforms(shared=None, oci=False):
    base = shared or random_blob(2000)
    return [
        Image([base, random_blob(100)], oci=oci),
        Image([random_blob(200)], architecture="arm64", variant="v8", oci=oci),
        Image([random_blob(300)], architecture="arm", variant="v7", oci=oci),
    ]


def test_docker_manifest_list_is_copied_byte_for_byte(hub, target, seeder, mirror, write_config):
    index = Index(_three_platforms())
    digest = seeder.push("library/python", "3.12", index)
    config = write_config(target, "- python:3.12", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/python:3.12") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/python:3.12")
    assert run.image("python:3.12")["upstream_manifest_gets"] == 4  # index + 3 children


def test_oci_index_with_attestations_is_copied_byte_for_byte(
    hub, target, seeder, mirror, write_config
):
    index = Index(_three_platforms(oci=True), oci=True, attestations=True)
    digest = seeder.push("library/alpine", "3.20", index)
    config = write_config(target, "- alpine:3.20", docker_io=hub.url)

    assert mirror("sync", config=config).code == 0
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/alpine:3.20") == digest
    for child in index.children:  # the attestation manifests are there, by digest
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/alpine@{child.digest}") == child.digest
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/alpine:3.20")


def test_layers_shared_across_tags_and_repositories_are_uploaded_once(
    hub, target, seeder, mirror, write_config
):
    base = random_blob(500_000)
    seeder.push("library/a", "1", Image([base, random_blob(10)]))
    seeder.push("library/a", "2", Image([base, random_blob(20)]))
    seeder.push("library/b", "1", Image([base, random_blob(30)]))
    config = write_config(target, "- a:1\n- a:2\n- b:1", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0
    images = run.report["images"]
    uploaded = sum(i["blobs_copied"] for i in images)
    assert uploaded == 1 + 3 * 2  # the base once; each image's own layer and config
    assert sum(i["blobs_mounted"] + i["blobs_skipped"] for i in images) == 2
    for ref in ("a:1", "a:2", "b:1"):
        skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/{ref}")


def test_resync_of_unchanged_images_spends_no_pull(hub, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    seeder.push("library/python", "3.12", Index(_three_platforms(), oci=True))
    config = write_config(target, "- nginx:1.16\n- python:3.12", docker_io=hub.url)
    assert mirror("sync", config=config).code == 0
    hub.reset_counters()

    run = mirror("sync", config=config)

    assert run.code == 0
    assert [i["action"] for i in run.report["images"]] == ["skipped", "skipped"]
    assert hub.counters.manifest_gets == 0
    assert run.report["summary"]["upstream_manifest_gets"] == 0
    assert hub.counters.blob_redirects == 0


def test_a_moved_upstream_tag_updates_only_that_image(hub, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    seeder.push("library/nginx", "1.17", Image([random_blob(1000)]))
    config = write_config(target, "- nginx:1.16\n- nginx:1.17", docker_io=hub.url)
    assert mirror("sync", config=config).code == 0
    moved = seeder.push("library/nginx", "1.17", Image([random_blob(1000)]))
    hub.reset_counters()

    run = mirror("sync", config=config)

    assert run.image("nginx:1.16")["action"] == "skipped"
    assert run.image("nginx:1.17")["action"] == "copied"
    assert hub.counters.manifest_gets == 1
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.17") == moved


def test_an_index_with_one_changed_child_pulls_only_the_index_and_that_child(
    hub, target, seeder, mirror, write_config
):
    children = _three_platforms(oci=True)
    seeder.push("library/python", "3.12", Index(children, oci=True))
    config = write_config(target, "- python:3.12", docker_io=hub.url)
    assert mirror("sync", config=config).code == 0
    children[1] = Image([random_blob(222)], architecture="arm64", variant="v8", oci=True)
    moved = seeder.push("library/python", "3.12", Index(children, oci=True))
    hub.reset_counters()

    run = mirror("sync", config=config)

    assert hub.counters.manifest_gets == 2
    assert run.image("python:3.12")["upstream_manifest_gets"] == 2
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/python:3.12") == moved


def test_a_platform_subset_writes_a_filtered_index_and_records_the_upstream_digest(
    hub, target, seeder, mirror, write_config
):
    index = Index(_three_platforms(oci=True), oci=True, attestations=True)
    upstream_digest = seeder.push("library/alpine", "3.20", index)
    config = write_config(
        target, "- image: alpine:3.20\n  platforms: [linux/arm64]", docker_io=hub.url
    )

    run = mirror("sync", config=config)

    assert run.code == 0
    result = run.image("alpine:3.20")
    assert result["platforms"] == "linux/arm64"
    assert result["upstream_digest"] == upstream_digest != result["target_digest"]
    raw = skopeo.raw_manifest(target.host, f"{HUB_PREFIX}/alpine:3.20")
    written = json.loads(raw)
    arm64 = index.images[1]
    assert [m["digest"] for m in written["manifests"]] == [
        arm64.digest,
        index.attestation_for(arm64).digest,
    ]
    assert result["upstream_manifest_gets"] == 3  # index, arm64 image, its attestation
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/alpine:3.20")
    hub.reset_counters()

    again = mirror("sync", config=config)

    assert again.image("alpine:3.20")["action"] == "skipped"
    assert hub.counters.manifest_gets == 0


def test_semver_and_latest_rules_pick_from_every_page_of_tags(
    hub, target, seeder, mirror, write_config
):
    image = Image([random_blob(100)])
    tags = [f"1.{minor}.0" for minor in range(120)] + ["2.0.0-rc.1", "latest", "1.119.0-alpine"]
    for blob in image.blobs():
        seeder.blob("library/tool", blob)
    for tag in tags:
        seeder.manifest("library/tool", tag, image.manifest, image.media_type)
    config = write_config(
        target,
        """
        - image: tool
          tags: {semver: ">=1.100.0 <2", latest: 3}
        """,
        docker_io=hub.url,
    )

    run = mirror("sync", config=config)

    assert run.code == 0
    copied = sorted(i["source"].rsplit(":", 1)[1] for i in run.report["images"])
    assert copied == ["1.117.0", "1.118.0", "1.119.0"]
    pages = {query for _, path, query in hub.counters.requests if path.endswith("/tags/list")}
    assert len(pages) == 2  # 123 tags at 100 a page: the first page, then the one after `last=`


def test_a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_tagged(
    hub, target, seeder, mirror, write_config
):
    bad = random_blob(400_000)
    seeder.push("library/nginx", "1.16", Image([random_blob(100), bad]))
    seeder.push("library/redis", "7", Image([random_blob(100)]))
    hub.corrupt.add(bad.digest)
    config = write_config(target, "- nginx:1.16\n- redis:7", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    failed = run.image("nginx:1.16")
    assert failed["action"] == "failed"
    assert failed["error"]["code"] == "DIGEST_MISMATCH"
    assert bad.digest in failed["error"]["message"]
    assert run.image("redis:7")["action"] == "copied"
    repo = f"{target.url}/v2/{HUB_PREFIX}/nginx"
    assert httpx.head(f"{repo}/blobs/{bad.digest}").status_code == 404
    assert httpx.get(f"{target.url}/v2/{HUB_PREFIX}/nginx/tags/list").json().get("tags") is None


def test_a_missing_upstream_image_fails_alone_with_exit_1(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nosuch:1\n- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("nosuch:1")["error"]["code"] == "MANIFEST_UNKNOWN"
    assert run.image("nginx:1.16")["action"] == "copied"
    assert "failed     docker.io/library/nosuch:1" in run.out
    assert "hint:" in run.out


def test_a_digest_pin_lands_under_a_pin_tag(hub, target, seeder, mirror, write_config):
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, f"- nginx@{digest}", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0
    pin = f"{HUB_PREFIX}/nginx:pin-sha256-{digest.removeprefix('sha256:')}"
    assert skopeo.raw_digest(target.host, pin) == digest
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx@{digest}") == digest


def test_plan_writes_nothing_and_spends_no_pull(hub, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    seeder.push("library/python", "3.12", Index(_three_platforms()))
    config = write_config(target, "- nginx:1.16\n- python:3.12", docker_io=hub.url)

    run = mirror("plan", config=config)

    assert run.code == 0
    assert run.image("nginx:1.16")["action"] == "would-copy"
    assert run.image("nginx:1.16")["estimated_upstream_gets"] == "1"
    assert run.image("python:3.12")["estimated_upstream_gets"] == "1+children"
    assert hub.counters.manifest_gets == 0
    assert httpx.get(f"{target.url}/v2/_catalog").json()["repositories"] == []


def test_a_plain_upstream_and_a_basic_auth_target(upstream, seeder, mirror, tmp_path, monkeypatch):
    from tests.support.registry import LocalRegistry

    digest = seeder.push("team/app", "1.0", Image([random_blob(1000)]))
    monkeypatch.setenv("TARGET_USER", "pusher")
    monkeypatch.setenv("TARGET_PASS", "s3cret-pass")
    with LocalRegistry(htpasswd=("pusher", "s3cret-pass")) as secured:
        config = tmp_path / "basic.yaml"
        config.write_text(
            f"""version: 1
target:
  kind: registry
  registry_url: {secured.url}
  credentials: {{username_env: TARGET_USER, password_env: TARGET_PASS}}
registries:
  {upstream.host}: {{url: {upstream.url}}}
images:
  - {upstream.host}/team/app:1.0
"""
        )
        run = mirror("sync", config=config)
        assert run.code == 0, run.out
        alias = upstream.host.replace(":", "-")
        got = httpx.head(
            f"{secured.url}/v2/mirror/{alias}/team/app/manifests/1.0",
            auth=("pusher", "s3cret-pass"),
            headers={"Accept": Image([]).media_type},
        )
        assert got.headers["docker-content-digest"] == digest

        monkeypatch.setenv("TARGET_PASS", "wrong")
        refused = mirror("sync", config=config)
        assert refused.code == 1
        assert refused.report["images"][0]["error"]["code"] == "UNAUTHORIZED"
        assert "wrong" not in refused.out + refused.err + json.dumps(refused.report)


def test_a_rule_or_platform_list_that_selects_nothing_fails_that_entry_only(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/tool", "1.0.0", Image([random_blob(100)]))
    seeder.push("library/multi", "1", Index(_three_platforms()))
    config = write_config(
        target,
        """
        - image: tool
          tags: {semver: ">=2"}
        - image: multi:1
          platforms: [windows/amd64]
        - tool:1.0.0
        """,
        docker_io=hub.url,
    )

    run = mirror("sync", config=config)

    assert run.code == 1
    failed = [i for i in run.report["images"] if i["action"] == "failed"]
    assert [i["error"]["code"] for i in failed] == ["NOTHING_SELECTED", "NOTHING_SELECTED"]
    assert "1 tags upstream" in failed[0]["error"]["message"]
    assert "linux/arm64/v8" in failed[1]["error"]["hint"]
    assert run.image("tool:1.0.0")["action"] == "copied"


def test_an_unreachable_target_fails_every_image_before_any_upstream_request(
    hub, seeder, mirror, write_config
):
    from types import SimpleNamespace

    from tests.support.registry import free_port

    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    closed = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    config = write_config(
        closed, "- nginx:1.16\n- python:3.12", docker_io=hub.url,
        extra="timeouts: {unreachable: 2s}\n",
    )  # fmt: skip

    started = time.monotonic()
    run = mirror("sync", config=config)

    assert run.code == 1
    assert time.monotonic() - started < 8  # given up after 2 s, not the default 10 s
    codes = [i["error"]["code"] for i in run.report["images"]]
    assert codes == ["TARGET_UNAVAILABLE", "TARGET_UNAVAILABLE"]  # refused: the breaker
    assert "check that the registry is up and reachable" in run.out
    assert "raise timeouts.unreachable" in run.out  # the setting that waits longer
    assert hub.counters.requests == []


def test_with_a_proxy_configured_blobs_travel_on_httpx_and_are_still_verified(
    hub, target, seeder, mirror, write_config, monkeypatch
):
    """A proxy in the environment hands blob bodies back to httpx's own transport, which
    knows proxy rules (NO_PROXY keeps these local registries direct)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    digest = seeder.push("library/redis", "7", Image([random_blob(3 << 20)]))
    bad = random_blob(400_000)
    seeder.push("library/nginx", "1.16", Image([bad]))
    hub.corrupt.add(bad.digest)
    config = write_config(target, "- redis:7\n- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("nginx:1.16")["error"]["code"] == "DIGEST_MISMATCH"
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/redis:7") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/redis:7")
