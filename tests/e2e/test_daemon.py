"""`mirror daemon` as ECS runs it: a subprocess with a schedule, health, metrics, SIGTERM."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import skopeo
from tests.support.daemon import daemon_config, wait_for
from tests.support.images import Image, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HUB_PREFIX = "mirror/docker-hub/library"


def test_the_daemon_syncs_at_start_and_on_schedule_and_reports_health_and_metrics(
    hub, target, seeder, write_config, daemon_for
):
    first = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    port = free_port()
    daemon = daemon_for(daemon_config(write_config, target, hub, "- nginx:1.16", port), port)

    wait_for(lambda: daemon.health()["passes"] >= 1)
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16") == first
    moved = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16") == moved)

    health = daemon.health()
    assert health["status"] == "ok" and health["last_success"]
    metrics = daemon.metrics()
    assert 'mirror_upstream_pulls_total{credential="anonymous",registry="docker.io"} 2.0' in metrics
    assert 'mirror_passes_total{result="ok"}' in metrics
    assert "mirror_last_success_timestamp_seconds" in metrics
    checked = subprocess.run(
        [sys.executable, "-m", "mirror", "health", "--port", str(port)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout
    assert daemon.stop() == 0
    done = [e for e in daemon.events() if e["event"] == "image_done"]
    assert done and all(e["source"] == "docker.io/library/nginx:1.16" for e in done)


def test_sigterm_during_a_large_upload_exits_in_grace_and_leaves_no_broken_tag(
    hub, target, seeder, write_config, daemon_for, mirror
):
    big = Image([random_blob(12 * 2**20)])
    digest = seeder.push("library/big", "1", big)
    hub.cdn_mib_per_second = 2.0  # a 6 s download
    port = free_port()
    config = daemon_config(write_config, target, hub, "- big:1", port, extra="  grace_seconds: 1\n")
    daemon = daemon_for(config, port)
    wait_for(lambda: hub.counters.blob_redirects >= 2)  # config and layer are streaming
    time.sleep(0.5)

    stopped_at = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopped_at < 1 + 3
    manifest = httpx.head(
        f"{target.url}/v2/{HUB_PREFIX}/big/manifests/1", headers={"Accept": big.media_type}
    )
    assert manifest.status_code == 404  # nothing tagged
    events = [e["event"] for e in daemon.events()]
    assert "daemon_stopping" in events
    # the pass cut short is still told: pass_done (and its metrics) with what it abandoned
    (done,) = [e for e in daemon.events() if e["event"] == "pass_done"]
    assert done["failures"] == [{"source": "docker.io/library/big:1", "code": "ABANDONED"}]
    assert any(e["event"] == "metrics" and e.get("ImagesFailed") == 1 for e in daemon.events())

    hub.cdn_mib_per_second = None
    rerun = mirror("sync", config=config)
    assert rerun.code == 0
    assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/big:1") == digest
    skopeo.copy_all_verifies(target.host, f"{HUB_PREFIX}/big:1")


@pytest.mark.parametrize(
    ("garble", "said"),
    [
        (lambda text: text.replace("images:", "imagez:").encode(), "unknown key 'imagez'"),
        (lambda text: text.encode().replace(b"nginx", b"ng\xffinx"), "is not UTF-8 text"),
        (lambda text: text.encode().replace(b"nginx", b"ng\x00inx"), "#x0000 is not allowed"),
    ],
    ids=["an unknown key", "a byte that is not UTF-8", "a NUL"],
)
def test_a_config_broken_while_running_keeps_the_last_good_one(
    hub, target, seeder, write_config, daemon_for, garble, said
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    port = free_port()
    config = daemon_config(write_config, target, hub, "- nginx:1.16", port)
    daemon = daemon_for(config, port)
    wait_for(lambda: daemon.health()["passes"] >= 1)
    good = config.read_text()

    config.write_bytes(garble(good))
    health = wait_for(lambda: daemon.health() if daemon.health()["config_error"] else None)

    assert said in str(health["config_error"])  # type: ignore[index]
    assert f"{config}:" in str(health["config_error"])  # type: ignore[index]  # file, line
    passes = daemon.health()["passes"]
    wait_for(lambda: daemon.health()["passes"] > passes)  # still syncing, last good config
    assert "mirror_config_errors_total" in daemon.metrics()
    assert daemon.health()["status"] == "ok"
    config.write_text(good)
    wait_for(lambda: daemon.health()["config_error"] is None)
    assert daemon.stop() == 0


def test_the_daemon_checks_an_image_with_a_short_refresh_more_often_than_the_rest(
    hub, target, seeder, write_config, daemon_for
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    seeder.push("library/alpine", "3.20", Image([random_blob(100)]))
    port = free_port()
    seeder.push("library/redis", "7", Image([random_blob(100)]))
    images = (
        "- image: nginx\n  tags: ['1.16']\n  refresh: 1s\n- alpine:3.20\n"
        "- image: redis\n  tags: {latest: 1}"
    )
    config = daemon_config(write_config, target, hub, images, port)
    config.write_text(config.read_text().replace("every: 2s", "every: 1h"))
    daemon = daemon_for(config, port)
    wait_for(lambda: daemon.health()["passes"] >= 1)
    hub.reset_counters()

    moved = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    seeder.push("library/alpine", "3.20", Image([random_blob(100)]))
    wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16") == moved)

    others = [r for r in hub.counters.requests if "/alpine/" in r[1] or "/redis/" in r[1]]
    assert others == []  # due in 1h: not checked, and redis's tags not even listed
    assert daemon.health()["passes"] >= 2
    assert daemon.stop() == 0


def test_idle_connections_and_a_slow_loris_neither_stop_health_nor_passes(
    hub, target, seeder, write_config, daemon_for
):
    first = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    port = free_port()
    daemon = daemon_for(daemon_config(write_config, target, hub, "- nginx:1.16", port), port)
    wait_for(lambda: daemon.health()["passes"] >= 1)
    idle = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", port))  # connects, says nothing
        idle.append(sock)
    loris = socket.create_connection(("127.0.0.1", port))
    loris.sendall(b"GET /healthz HTTP/1.1\r\n")
    try:
        for _ in range(4):  # a header byte every half second, never finishing
            started = time.monotonic()
            checked = subprocess.run(
                [sys.executable, "-m", "mirror", "health", "--port", str(port)],
                cwd=ROOT, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert checked.returncode == 0, checked.stdout
            assert time.monotonic() - started < 2 + 1.5  # python start-up included
            loris.sendall(b"X")
            time.sleep(0.5)
        moved = seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
        wait_for(lambda: skopeo.raw_digest(target.host, f"{HUB_PREFIX}/nginx:1.16") == moved)
        assert first != moved
        for sock in [*idle[:20], loris]:  # the server let go of them: no request in 5 s
            sock.settimeout(10)
            assert sock.recv(1) == b""
    finally:
        for sock in [*idle, loris]:
            sock.close()
    assert daemon.stop() == 0


def test_metrics_labels_name_no_account_and_no_upstream_text(
    hub, target, seeder, write_config, daemon_for, hub_account
):
    hub_account("dckr_pat_1")
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    port = free_port()
    credentials = "    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}\n"
    config = daemon_config(write_config, target, hub, "- nginx:1.16\n- nosuch:1", port)
    text = config.read_text().replace(f"    url: {hub.url}\n", f"    url: {hub.url}\n{credentials}")
    config.write_text(text)
    daemon = daemon_for(config, port)

    wait_for(lambda: daemon.health()["passes"] >= 1)

    metrics = daemon.metrics()
    assert "ci-bot" not in metrics
    assert 'credential="credential-0"' in metrics
    assert 'mirror_image_failures_total{code="MANIFEST_UNKNOWN"}' in metrics
    assert daemon.stop() == 0
