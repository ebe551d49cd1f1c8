"""Real registries' documented quirks, each modelled in front of the real docker-registry
and run end to end through `mirror sync`, with skopeo checking what was written.

The source of each behaviour is cited beside the test that models it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import skopeo
from tests.support.hostile import HostileFront
from tests.support.hub import DockerHubFront
from tests.support.images import Image, Index, attach_signature_and_sbom, random_blob
from tests.support.personalities import K8sRegistry
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.e2e

HUB = "mirror/docker-hub/library"
K8S = "mirror/kubernetes"
ROOT = Path(__file__).resolve().parents[2]


def k8s_config(write_config, target, url: str, images: str, extra: str = ""):
    return write_config(
        target, images, extra=f"registries:\n  registry.k8s.io:\n    url: {url}\n{extra}"
    )


def seed_k8s(seeder) -> dict[str, str]:
    digests = {"pause:3.9": seeder.push("pause", "3.9", Image([random_blob(2000)]))}
    for tag in ("v1.10.0", "v1.11.0", "v1.11.1", "v1.9.3"):
        digests[f"coredns/coredns:{tag}"] = seeder.push(
            "coredns/coredns",
            tag,
            Index([Image([random_blob(500)]), Image([random_blob(500)], architecture="arm64")]),
        )
    return digests


K8S_IMAGES = """\
- registry.k8s.io/pause:3.9
- image: registry.k8s.io/coredns/coredns
  tags: {semver: ">=1.10", latest: 2}
"""


def test_registry_k8s_io_redirects_every_read_and_mirror_follows(
    upstream, target, seeder, mirror, write_config
):
    # registry.k8s.io answers /v2/ and 307-redirects every other /v2/ request to Artifact
    # Registry (k8s-artifacts-prod) (kubernetes/registry.k8s.io docs).
    digests = seed_k8s(seeder)
    with K8sRegistry(upstream.url) as k8s:
        config = k8s_config(write_config, target, k8s.url, K8S_IMAGES)

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    for ref in ("pause:3.9", "coredns/coredns:v1.11.1", "coredns/coredns:v1.11.0"):
        assert skopeo.raw_digest(target.host, f"{K8S}/{ref}") == digests[ref]
        skopeo.copy_all_verifies(target.host, f"{K8S}/{ref}")
    listings = [p for who, _, p, _ in k8s.requests if who == "backend" and "tags/list" in p]
    assert len(listings) == 2  # four tags, two a page: the second page on the backend


def test_a_redirect_target_with_its_own_realm_gets_an_anonymous_token_not_the_account(
    upstream, target, seeder, mirror, write_config, monkeypatch
):
    # Artifact Registry may answer the redirected request with its own Bearer challenge.
    monkeypatch.setenv("K8S_USER", "ci-bot")
    monkeypatch.setenv("K8S_PASSWORD", "s3cret-password")
    digests = seed_k8s(seeder)
    basic = "Basic " + base64.b64encode(b"ci-bot:s3cret-password").decode()
    with K8sRegistry(upstream.url, challenge=True) as k8s:
        credentials = "    credentials: {username_env: K8S_USER, password_env: K8S_PASSWORD}\n"
        config = k8s_config(write_config, target, k8s.url, K8S_IMAGES, credentials)

        run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{K8S}/pause:3.9") == digests["pause:3.9"]
    backend = [h for who, _, _, h in k8s.requests if who == "backend"]
    assert backend and all(h.get("Authorization") != basic for h in backend)
    assert any(h.get("Authorization", "").startswith("Bearer ") for h in backend)


def test_a_failing_token_realm_is_retried_not_blamed_on_the_credentials(
    hub, target, seeder, mirror, write_config
):
    # auth.docker.io, Docker Hub's token service, answers 429s and 5xx of its own.
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    hub.token_failures = [503, 429]
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    (usage,) = run.report["registries"]
    assert usage["token_realm_retries"] == 2
    assert "token service failed 2x (retried)" in run.out


def test_docker_hub_401_for_a_missing_repository_says_check_the_name_first(
    hub, target, seeder, mirror, write_config
):
    # Docker Hub answers 401 insufficient_scope, even with a valid token, for a
    # repository that does not exist (jupyterhub/binderhub#1664; "by design", per the
    # registry team in hashicorp/terraform-provider-docker#140).
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    hub.unknown_is_401 = True
    config = write_config(target, "- nginx:1.16\n- ngnix:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    error = run.image("ngnix:1.16")["error"]
    assert error["code"] == "NOT_FOUND_OR_DENIED"
    assert error["hint"].startswith("check the image name first")
    assert run.image("nginx:1.16")["action"] == "copied"


def test_a_head_without_a_digest_costs_one_get_and_never_a_rewrite(
    hub, target, seeder, mirror, write_config
):
    # Docker-Content-Digest is optional in the distribution spec; quay/quay#1310 handles
    # registries that omit it.
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    hub.head_digest = False
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)
    assert mirror("sync", config=config).code == 0
    hub.reset_counters()

    again = mirror("sync", config=config)

    assert again.code == 0
    result = again.image("nginx:1.16")
    assert result["action"] == "skipped" and result["manifests_pushed"] == 0
    assert result["upstream_manifest_gets"] == hub.counters.manifest_gets == 1
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


def test_a_schema1_tag_is_reported_without_spending_a_pull(
    upstream, target, seeder, mirror, write_config
):
    # Schema1 (manifest.v1+prettyjws) is deprecated (Docker's "Deprecated features":
    # pushing and pulling with image manifest v2 schema 1); very old tags still serve it.
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    schema1 = json.dumps({"schemaVersion": 1, "name": "library/old", "tag": "1"}).encode()
    with HostileFront(upstream.url) as front:
        front.serve_manifest(
            "library/old:1", schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws"
        )
        config = write_config(target, "- old:1\n- nginx:1.16", docker_io=front.url)

        run = mirror("sync", config=config)
        gets = [p for m, p in front.calls if m == "GET" and "/manifests/" in p and "old" in p]

    assert run.code == 1
    error = run.image("old:1")["error"]
    assert error["code"] == "UNSUPPORTED_MANIFEST" and "pick a newer tag" in error["hint"]
    assert gets == []
    assert run.image("nginx:1.16")["action"] == "copied"


def test_a_cdn_that_compresses_when_asked_is_never_asked(hub, target, seeder, mirror, write_config):
    # Servers and proxies add Content-Encoding when the client offers gzip, and the bytes
    # no longer match the digest (moby/moby#17595, fixed by asking for identity in #25122;
    # quay/quay#1310 does the same).
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(300_000)]))
    hub.compress_when_asked = True
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert hub.counters.compressed_blobs == 0
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


def test_a_layer_labelled_gzip_whose_bytes_match_is_copied_as_those_bytes(
    hub, target, seeder, mirror, write_config
):
    # Apache in front of Pulp labels an already-gzip layer Content-Encoding: gzip
    # (moby/moby#17595): the raw bytes are the blob, and must never be inflated.
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(300_000)]))
    hub.gzip_label = "label"
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


def test_a_layer_compressed_in_transit_still_fails_its_digest(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(300_000)]))
    hub.gzip_label = "always"  # other bytes on the wire than the digest names
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("nginx:1.16")["action"] == "failed"
    assert "nginx" not in str(target.catalog())  # no tag, no manifest


@pytest.mark.parametrize("answer", ["406", "html"])
def test_an_odd_referrers_answer_means_no_api_and_the_fallback_tag_is_used(
    hub, target, seeder, mirror, write_config, answer
):
    # A registry without the referrers API may answer 406 (google/go-containerregistry
    # #1962) or a 200 that is not an OCI index. Both mean "no referrers API".
    image = Image([random_blob(1000)])
    seeder.push("library/nginx", "1.16", image)
    attached = attach_signature_and_sbom(seeder, "library/nginx", image)
    hub.referrers_answer = answer
    config = write_config(target, "- image: nginx:1.16\n  artifacts: {}", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    result = run.image("nginx:1.16")
    assert "artifacts_error" not in result
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:{tag}.sig") == attached.signature
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx@{attached.sbom}") == attached.sbom


def test_gitlab_resolving_the_fallback_tag_to_the_image_writes_no_bogus_tag(
    hub, target, seeder, mirror, write_config
):
    # GitLab's registry resolves `sha256-<hex>` to the manifest with that digest, not to
    # a referrers index (oras-project/oras-go#1396).
    image = Image([random_blob(1000)])
    seeder.push("library/nginx", "1.16", image)
    hub.gitlab_fallback = True
    config = write_config(target, "- image: nginx:1.16\n  artifacts: {}", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert "artifacts_error" not in run.image("nginx:1.16")
    assert set(target.catalog()[f"{HUB}/nginx"]) == {"1.16"}


def test_artifacts_that_cannot_be_copied_are_a_warning_on_an_image_in_place(
    hub, target, seeder, mirror, write_config
):
    image = Image([random_blob(1000)])
    digest = seeder.push("library/nginx", "1.16", image)
    hub.referrers_answer = "500"
    config = write_config(
        target,
        "- image: nginx:1.16\n  artifacts: {}",
        docker_io=hub.url,
    )

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    result = run.image("nginx:1.16")
    assert result["action"] == "copied" and result["artifacts_error"]["code"] == "UNKNOWN"
    assert "warning: artifacts not copied" in run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


@pytest.mark.parametrize("quirk", ["basic_challenge_too", "realm_query"])
def test_auth_edges_several_challenges_and_a_realm_with_its_own_query(
    hub, target, seeder, mirror, write_config, quirk
):
    # RFC 7235 section 4.1 allows several challenges in one WWW-Authenticate; a realm is a
    # URL and may carry a query string of its own, which the token request must keep.
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    if quirk == "basic_challenge_too":
        hub.basic_challenge_too = True
    else:
        hub.realm_query = "tenant=acme"
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest


def test_a_target_that_dies_mid_sync_fails_the_rest_within_30_seconds(
    upstream, seeder, write_config, tmp_path
):
    for i in range(8):
        seeder.push(f"library/img{i}", "1", Image([random_blob(3 * 2**20)]))
    with LocalRegistry() as target, DockerHubFront(upstream.url) as hub:
        hub.cdn_mib_per_second = 3.0  # each image takes about a second to stream
        config = write_config(target, "\n".join(f"- img{i}:1" for i in range(8)), docker_io=hub.url)
        report = tmp_path / "report.json"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirror",
                "sync",
                "--config",
                str(config),
                "--report",
                str(report),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)
        target.kill()  # the target dies, mid-upload
        died = time.monotonic()
        code = process.wait(timeout=60)
        took = time.monotonic() - died

    assert code == 1
    assert took < 30, f"{took:.1f}s after the target died"
    images = json.loads(report.read_text())["images"]
    codes = {i["error"]["code"] for i in images if i["action"] == "failed"}
    assert "TARGET_UNAVAILABLE" in codes
