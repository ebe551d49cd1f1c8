"""`mirror lock`: every configured reference with its mirror digest, read from the target
alone; `mirror buildspec --lock` pins the CodeBuild include to it."""

from __future__ import annotations

import json

import pytest

from tests.support import skopeo
from tests.support.images import Image, Index, random_blob

pytestmark = pytest.mark.e2e

HUB_PREFIX = "mirror/docker-hub/library"


@pytest.fixture
def synced(hub, target, seeder, write_config, mirror):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    index = seeder.push(
        "library/python",
        "3.12",
        Index([Image([random_blob(100)]), Image([random_blob(100)], architecture="arm64")]),
    )
    pinned = seeder.push("library/busybox", "1", Image([random_blob(100)]))
    config = write_config(
        target,
        f"""\
        - nginx:1.16
        - image: python
          tags: ["3.12"]
          platforms: [linux/arm64]
        - busybox@{pinned}
        """,
        docker_io=hub.url,
    )
    assert mirror("sync", config=config).code == 0
    hub.reset_counters()
    return config, index, pinned


def test_the_lock_maps_each_written_reference_to_its_mirror_digest_without_asking_upstream(
    synced, hub, target, mirror, tmp_path
):
    config, index, pinned = synced
    out = tmp_path / "mirror.lock.json"

    run = mirror("lock", "--output", str(out), config=config)

    assert run.code == 0, run.err
    assert hub.counters.requests == []
    lock = json.loads(out.read_text())
    by_reference = {i["reference"]: i for i in lock["images"]}
    assert set(by_reference) == {"nginx:1.16", "python:3.12", f"busybox@{pinned}"}
    nginx = by_reference["nginx:1.16"]
    assert nginx["digest"] == skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16")
    assert nginx["upstream_digest"] == nginx["digest"]  # copied byte for byte
    assert nginx["target"] == f"{target.host}/{HUB_PREFIX}/nginx@{nginx['digest']}"
    python = by_reference["python:3.12"]
    assert python["upstream_digest"] == index != python["digest"]  # filtered to arm64
    assert python["platforms"] == "linux/arm64"
    assert by_reference[f"busybox@{pinned}"]["digest"] == pinned


def test_buildspec_from_the_lock_pins_the_same_digests_without_a_registry(
    synced, target, mirror, tmp_path
):
    config, _, _ = synced
    out = tmp_path / "mirror.lock.json"
    assert mirror("lock", "--output", str(out), config=config).code == 0
    live = mirror("buildspec", "--format", "script", config=config)
    target.stop()  # the lock alone is enough

    locked = mirror("buildspec", "--format", "script", "--lock", str(out), config=config)

    assert locked.code == 0, locked.err
    assert locked.out == live.out
    assert f"{HUB_PREFIX}/nginx@sha256:" in locked.out


def test_an_unmirrored_image_leaves_the_lock_unwritten(
    synced, hub, target, seeder, write_config, mirror, tmp_path
):
    seeder.push("library/redis", "7", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16\n- redis:7", docker_io=hub.url, name="more.yaml")
    out = tmp_path / "mirror.lock.json"

    run = mirror("lock", "--output", str(out), config=config)

    assert run.code == 1
    assert "redis:7: not mirrored yet" in run.err and "nothing was written" in run.err
    assert not out.exists()
