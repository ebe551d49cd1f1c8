"""Refresh policy: immutable tags and digests cost no upstream request once mirrored;
mutable tags are checked every pass (the daemon's per-image `refresh` is in test_daemon)."""

from __future__ import annotations

import pytest

from tests.support import skopeo
from tests.support.images import Image, random_blob

pytestmark = pytest.mark.e2e

HUB_PREFIX = "mirror/docker-hub/library"


def upstream_requests(hub, repository: str) -> list[tuple[str, str, str]]:
    return [r for r in hub.counters.requests if f"/{repository}/" in r[1]]


def test_immutable_tags_and_digests_are_never_asked_again_once_mirrored(
    hub, target, seeder, write_config, mirror
):
    released = seeder.push("library/app", "v1.2.3", Image([random_blob(100)]))
    seeder.push("library/app", "latest", Image([random_blob(100)]))
    pinned = seeder.push("library/pinned", "1", Image([random_blob(100)]))
    config = write_config(
        target,
        f"- app:v1.2.3\n- app:latest\n- pinned@{pinned}",
        docker_io=hub.url,
        extra="defaults:\n  immutable_tags: ['v*.*.*']\n",
    )
    assert mirror("sync", config=config).code == 0
    hub.reset_counters()

    again = mirror("sync", config=config)

    assert again.code == 0
    asked = {(r[0], r[1]) for r in upstream_requests(hub, "app")}  # with the 401 challenge
    assert asked == {("HEAD", "/v2/library/app/manifests/latest")}
    assert upstream_requests(hub, "pinned") == []
    assert again.image("app:v1.2.3")["upstream_checked"] is False
    assert again.image("app:v1.2.3")["target_digest"] == released
    assert "immutable: not checked upstream" in again.out


def test_an_immutable_tag_missing_from_the_target_is_copied(
    hub, target, seeder, write_config, mirror
):
    released = seeder.push("library/app", "v2.0.0", Image([random_blob(100)]))
    config = write_config(
        target, "- image: app\n  tags: [v2.0.0]\n  immutable_tags: ['v*']", docker_io=hub.url
    )

    run = mirror("sync", config=config)

    assert run.code == 0 and run.image("app:v2.0.0")["action"] == "copied"
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/app:v2.0.0") == released
