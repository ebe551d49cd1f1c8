"""Faults, round 2, each injected into real registries: a target that is away for two
seconds, a target disk that fills (a real tmpfs), a sync stopped by SIGTERM, a daemon whose
wall clock steps back. Each asserts what the user sees, and that no tag is broken."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import skopeo
from tests.support.daemon import daemon_config, wait_for
from tests.support.ecr_front import EcrFront
from tests.support.hostile import HostileFront
from tests.support.images import Image, Index, Seeder, random_blob
from tests.support.registry import LocalRegistry, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HUB = "mirror/docker-hub/library"
MIB = 2**20


def assert_no_broken_tag(target: LocalRegistry) -> int:
    """Every tag in the target pulls whole (skopeo fetches and verifies every blob)."""
    tags = [(r, t) for r, tags in target.catalog().items() for t in tags]
    for repository, tag in tags:
        skopeo.copy_all_verifies(target.host, f"{repository}:{tag}")
    return len(tags)


def sync_process(config: Path, report: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", "sync", "--config", str(config), "--report", str(report),
         "--progress", "never", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


# --- A target away for two seconds --------------------------------------------------------


def test_a_two_second_target_outage_costs_two_seconds_not_the_pass(
    upstream, hub, seeder, write_config, tmp_path
):
    digests = {
        f"img{i}:1": seeder.push(f"library/img{i}", "1", Image([random_blob(2 * MIB)]))
        for i in range(8)
    }
    hub.cdn_mib_per_second = 4.0  # each image streams for about half a second
    with LocalRegistry() as target:
        images = "\n".join(f"- {ref}" for ref in digests)
        config = write_config(target, images, docker_io=hub.url)
        report = tmp_path / "report.json"
        process = sync_process(config, report)
        wait_for(lambda: hub.counters.blob_redirects >= 4)
        target.kill()  # a restart, a failover: away mid-upload
        time.sleep(2.0)
        target.start()
        out, err = process.communicate(timeout=120)

        assert process.returncode == 0, out + err
        for ref, digest in digests.items():
            assert skopeo.raw_digest(target.host, f"{HUB}/{ref}") == digest
        assert assert_no_broken_tag(target) == 8
    results = json.loads(report.read_text())["images"]
    assert {r["action"] for r in results} == {"copied"}


def test_the_daemon_tries_failed_images_again_after_a_short_back_off(
    hub, target, seeder, write_config, daemon_for
):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    port = free_port()
    section = f"daemon:\n  every: 6h\n  retry_failed: 1s\n  health_port: {port}\n"
    config = write_config(target, "- nginx:1.16\n- redis:7", docker_io=hub.url, extra=section)
    daemon = daemon_for(config, port)
    wait_for(lambda: daemon.health()["passes"] >= 1)
    assert daemon.health()["failed_images"] == [
        {"source": "docker.io/library/redis:7", "code": "MANIFEST_UNKNOWN"}
    ]

    def nginx_heads() -> int:
        return sum(1 for m, p, _ in hub.counters.requests if m == "HEAD" and "nginx" in p)

    asked = nginx_heads()
    digest = seeder.push("library/redis", "7", Image([random_blob(1000)]))  # it appears

    wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB}/redis:7") == digest, timeout=20)
    assert nginx_heads() == asked  # the retries asked only about the image that failed
    assert daemon.stop() == 0


# --- A target disk that fills -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the target's storage, which a test can grow."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_target_disk_fails_fast_names_the_storage_and_cancels_its_uploads(
    hub, seeder, mirror, write_config, small_disk
):
    digests = {
        f"img{i}:1": seeder.push(f"library/img{i}", "1", Image([random_blob(3 * MIB // 2)]))
        for i in range(5)
    }
    with (
        LocalRegistry(storage=small_disk / "storage") as target,
        EcrFront(target.url) as front,
    ):
        # One upload at a time, so the disk fills during a blob's upload, never under a
        # manifest PUT: distribution 2.8 stores a manifest it could not write as 0 bytes
        # and answers 500 for it ever after, which no client can repair.
        config = write_config(
            front, "\n".join(f"- {r}" for r in digests), docker_io=hub.url,
            extra="concurrency: {images: 1, blobs: 1}\n",
        )  # fmt: skip

        full = mirror("sync", config=config)

        assert full.code == 1
        failed = [i for i in full.report["images"] if i["action"] == "failed"]
        assert failed, "5 images of 1.5 MiB cannot fit 4 MiB"
        for image in failed:
            assert image["error"]["code"] == "TARGET_STORAGE", image["error"]
            assert "no space left on device" in image["error"]["message"]
            assert "check its disk or storage backend" in image["error"]["hint"]
        retries = [line for line in full.err.splitlines() if "retrying" in line]
        assert len(retries) <= 3, retries  # the pass's allowance, not five a blob
        failed_puts = {
            p.partition("?")[0]
            for m, p, status in front.calls
            if m == "PUT" and status >= 500 and "/blobs/" in p
        }
        deletes = {p.partition("?")[0] for m, p, _ in front.calls if m == "DELETE"}
        assert failed_puts and failed_puts <= deletes  # every failed upload cancelled

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        grown = mirror("sync", config=config)

        assert grown.code == 0, grown.out
        for ref, digest in digests.items():
            assert skopeo.raw_digest(target.host, f"{HUB}/{ref}") == digest
        assert assert_no_broken_tag(target) == 5


def test_a_child_manifest_whose_blob_is_missing_in_the_target_is_made_whole(
    hub, target, seeder, mirror, write_config
):
    amd, arm = Image([random_blob(900)]), Image([random_blob(900)], architecture="arm64")
    digest = seeder.push("library/nginx", "1.16", Index([amd, arm]))
    in_target = Seeder(target.url)
    in_target.push(f"{HUB}/nginx", amd.digest, amd)  # an earlier run's child ...
    deleted = httpx.delete(f"{target.url}/v2/{HUB}/nginx/blobs/{amd.layers[0].digest}")
    assert deleted.status_code == 202  # ... whose layer the disk lost
    in_target.close()

    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    assert run.code == 0, run.out
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")  # the lost layer is back


def test_failed_uploads_are_cancelled(upstream, hub, target, seeder, mirror, write_config):
    # A blob whose bytes are wrong: the upload got data before the digest failed it.
    bad = random_blob(400_000)
    seeder.push("library/nginx", "1.16", Image([bad]))
    hub.corrupt.add(bad.digest)
    # A manifest naming a layer the upstream does not have: the upload got no byte.
    config_blob, absent = random_blob(100), random_blob(1000)
    seeder.blob("tools/app", config_blob)
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": Image([absent]).media_type,
         "config": config_blob.descriptor(), "layers": [absent.descriptor()]}
    ).encode()  # fmt: skip
    with HostileFront(upstream.url) as quirky, EcrFront(target.url) as front:
        quirky.serve_manifest("tools/app:1", manifest, Image([absent]).media_type)
        registries = (
            f"registries:\n  docker.io:\n    url: {hub.url}\n"
            f"  quirky.example.com:\n    url: {quirky.url}\n"
        )
        config = write_config(
            front, "- nginx:1.16\n- quirky.example.com/tools/app:1", extra=registries
        )

        run = mirror("sync", config=config)

        assert run.code == 1
        assert run.image("nginx:1.16")["error"]["code"] == "DIGEST_MISMATCH"
        assert run.image("app:1")["error"]["code"] == "BLOB_UNKNOWN"
        puts = {p.partition("?")[0] for m, p, status in front.calls if m == "PUT" and status >= 400}
        deletes = {p.partition("?")[0] for m, p, _ in front.calls if m == "DELETE"}
        # Every failed upload was cancelled. (Whether the registry can drop it races with
        # its own handling of the aborted PUT: distribution answers 204, or 404 when that
        # handling invalidated the session first.)
        assert puts and puts <= deletes


# --- A one-shot sync stopped ------------------------------------------------------------------


def test_sigterm_stops_a_sync_within_its_grace_with_a_report_and_no_broken_tag(
    hub, target, seeder, write_config, tmp_path
):
    for i in range(6):
        seeder.push(f"library/img{i}", "1", Image([random_blob(4 * MIB)]))
    hub.cdn_mib_per_second = 1.0  # four seconds an image: SIGTERM finds them copying
    config = write_config(target, "\n".join(f"- img{i}:1" for i in range(6)), docker_io=hub.url)
    report = tmp_path / "report.json"
    process = sync_process(config, report, "--grace", "1s")
    wait_for(lambda: hub.counters.blob_redirects >= 4)

    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 1, out + err  # it abandoned images it was copying
    assert time.monotonic() - stopped < 1 + 3
    assert "Traceback" not in err
    images = json.loads(report.read_text())["images"]
    codes = sorted(i["error"]["code"] for i in images)
    assert codes == ["ABANDONED"] * 4 + ["STOPPING"] * 2
    assert "sync: 2 deferred, 4 failed;" in out  # the summary, though it was stopped
    assert "ABANDONED" in out
    assert assert_no_broken_tag(target) == 0  # nothing was tagged


def test_sigterm_with_grace_enough_lets_the_images_copying_finish(
    hub, target, seeder, write_config, tmp_path
):
    digests = {
        f"img{i}:1": seeder.push(f"library/img{i}", "1", Image([random_blob(2 * MIB)]))
        for i in range(6)
    }
    hub.cdn_mib_per_second = 2.0
    config = write_config(
        target, "\n".join(f"- {r}" for r in digests), docker_io=hub.url,
        extra="concurrency: {images: 2}\n",
    )  # fmt: skip
    report = tmp_path / "report.json"
    process = sync_process(config, report, "--grace", "30s")
    wait_for(lambda: hub.counters.blob_redirects >= 2)

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, out + err  # nothing abandoned; the rest not started
    images = json.loads(report.read_text())["images"]
    copied = [i for i in images if i["action"] == "copied"]
    assert len(copied) == 2
    assert (
        sorted(i["error"]["code"] for i in images if i["action"] == "deferred") == ["STOPPING"] * 4
    )
    for image in copied:
        ref = image["source"].removeprefix("docker.io/library/")
        assert skopeo.raw_digest(target.host, f"{HUB}/{ref}") == digests[ref]


# --- A wall clock that steps -------------------------------------------------------------------


def test_a_wall_clock_stepped_back_does_not_stop_the_daemons_passes(
    hub, target, seeder, write_config, daemon_for, tmp_path
):
    first = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    port = free_port()
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    shim = ROOT / "tests" / "support" / "clock"
    daemon = daemon_for(
        daemon_config(write_config, target, hub, "- nginx:1.16", port),
        port,
        env={"PYTHONPATH": str(shim), "MIRROR_TEST_CLOCK_OFFSET_FILE": str(offset)},
    )
    wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == first)
    passes = int(daemon.health()["passes"])  # type: ignore[call-overload]

    offset.write_text("-60")  # the wall clock steps back a minute
    moved = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))

    wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == moved, timeout=10)
    wait_for(lambda: int(daemon.health()["passes"]) >= passes + 2, timeout=10)  # type: ignore[call-overload]
    assert daemon.stop() == 0


def test_the_clock_shim_steps_the_wall_clock_of_the_process_it_is_loaded_into(tmp_path):
    offset = tmp_path / "clock-offset"
    offset.write_text("-3600")
    probe = (
        "import time, datetime; "
        "print(round(time.time()), round(datetime.datetime.now().timestamp()))"
    )
    shifted = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(ROOT / "tests" / "support" / "clock"),
             "MIRROR_TEST_CLOCK_OFFSET_FILE": str(offset)},
    ).stdout.split()  # fmt: skip
    now = time.time()
    assert all(abs(int(t) - (now - 3600)) < 30 for t in shifted)
