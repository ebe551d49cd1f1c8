"""`mirror copy SRC`: one image now, with the config's target, registries and credentials,
and the same guarantees as sync (digest kept, verified, tags pushed last, a report)."""

from __future__ import annotations

import pytest

from tests.support import skopeo
from tests.support.images import Image, random_blob

pytestmark = pytest.mark.e2e

HUB_PREFIX = "mirror/docker-hub/library"


def test_copy_takes_one_image_that_is_not_in_the_config(hub, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    wanted = seeder.push("library/redis", "7", Image([random_blob(5000)]))
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("copy", "redis:7", config=config)

    assert run.code == 0, run.err
    assert [i["source"] for i in run.report["images"]] == ["docker.io/library/redis:7"]
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/redis:7") == wanted
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/redis:7")
    assert list(target.catalog()) == [f"{HUB_PREFIX}/redis"]  # the config's list was left alone


def test_copy_with_tags_takes_those_tags_and_fails_like_sync_for_a_missing_one(
    hub, target, seeder, mirror, write_config
):
    digests = {t: seeder.push("library/node", t, Image([random_blob(100)])) for t in ("22", "20")}
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("copy", "node", "--tag", "22", "--tag", "20", "--tag", "19", config=config)

    assert run.code == 1
    assert run.image("node:19")["error"]["code"] == "MANIFEST_UNKNOWN"
    for tag, digest in digests.items():
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/node:{tag}") == digest


def test_copy_of_a_malformed_reference_is_a_usage_error(hub, target, mirror, write_config):
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    run = mirror("copy", "Nginx:1.16$(id)", config=config)

    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.startswith("mirror: ")
    assert hub.counters.requests == []
