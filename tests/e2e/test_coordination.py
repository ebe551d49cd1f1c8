"""Several mirror processes on one DynamoDB table (moto's) and the Docker-Hub-like front:
one quota between them, one copier per repository, a dead daemon's work taken over, and
a request rate no process pushes them past together."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import boto3
import httpx
import pytest

from mirror.coordination.table import Table
from mirror.errors import CoordinationError
from tests.support import skopeo
from tests.support.daemon import RunningDaemon, wait_for
from tests.support.fake_ecr import REGION
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import ACCEPT, LocalRegistry, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HUB = "mirror/docker-hub/library"
TABLE = "mirror-state"
MIB = 2**20


def config(write_config, target, hub, images: list[str], name: str, extra: str = "") -> Path:
    coordination = f"coordination: {{dynamodb_table: {TABLE}, lease_seconds: 5}}\n"
    return write_config(
        target, "\n".join(f"- {i}" for i in images), docker_io=hub.url,
        extra=coordination + extra, name=name,
    )  # fmt: skip


def daemon_section(port: int, every: str = "1h") -> str:
    return f"daemon:\n  every: {every}\n  health_address: 127.0.0.1\n  health_port: {port}\n"


def sync(path: Path, report: Path, *extra: str) -> subprocess.Popen[str]:
    """A `mirror sync` process; what it prints goes to a file beside its report (a pipe
    nobody reads would stop it at the 64 KiB a thousand image lines fill)."""
    output = report.with_suffix(".log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", "sync", "--config", str(path), "--report", str(report),
         "--progress", "never", *extra],
        cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True, env=os.environ,
    )  # fmt: skip


def finished(process: subprocess.Popen[str], report: Path, timeout: float) -> int:
    """The exit code; the process's output in the assertion when it failed."""
    code = process.wait(timeout=timeout)
    assert code == 0, report.with_suffix(".log").read_text()[-3000:]
    return code


def faithful(target: LocalRegistry, digests: dict[str, str]) -> bool:
    """Every tag in the target holds its upstream digest (asked while others write)."""
    with httpx.Client(base_url=target.url, timeout=10) as http:
        for name, digest in digests.items():
            repository, tag = name.split(":")
            held = http.head(f"/v2/{HUB}/{repository}/manifests/{tag}", headers={"Accept": ACCEPT})
            if held.headers.get("docker-content-digest") != digest:
                return False
    return True


def copied_by(daemon: RunningDaemon) -> int:
    return sum(
        1
        for event in daemon.events()
        if event.get("event") == "image_done" and event.get("action") == "copied"
    )


def table() -> Table:
    return Table(boto3.client("dynamodb", region_name=REGION), TABLE)


def daemon_leads() -> dict[str, object] | None:
    """The leader lease, when a daemon holds it."""
    leader = table().get("lease", "leader")
    return leader if leader is not None and str(leader["owner"]).startswith("daemon@") else None


def leases() -> list[dict[str, object]]:
    """The leases in the table; none before the first process has created it."""
    try:
        return table().query("lease")
    except CoordinationError:
        return []


def test_two_daemons_and_a_sync_started_together_pull_each_image_once_within_the_quota(
    aws, hub, target, seeder, write_config, daemon_for, tmp_path
):
    digests = {
        f"img{i}:1": seeder.push(f"library/img{i}", "1", Image([random_blob(64 * 1024)]))
        for i in range(8)
    }
    hub.limit, hub.window = 6, 10  # six pulls now, the other two when the window turns
    ports = [free_port(), free_port()]
    paths = [
        config(write_config, target, hub, list(digests), f"daemon-{p}.yaml", daemon_section(p))
        for p in ports
    ]
    daemons = [daemon_for(path, port) for path, port in zip(paths, ports, strict=True)]
    one_shot = sync(paths[0], tmp_path / "sync.json", "--max-wait", "60s")

    wait_for(lambda: faithful(target, digests), timeout=60)
    finished(one_shot, tmp_path / "sync.json", timeout=60)
    # each image pulled once, as one process alone would; the quota never overdrawn
    assert hub.counters.manifest_gets == len(digests)
    assert hub.counters.rejected_429 == 0
    report = json.loads((tmp_path / "sync.json").read_text())
    copied = copied_by(daemons[0]) + copied_by(daemons[1]) + report["summary"]["copied"]
    assert copied == len(digests)  # one copier per image
    assert all(i["action"] in ("copied", "skipped") for i in report["images"])
    for daemon in daemons:
        assert daemon.health()["status"] == "ok"
    # a daemon leads once its first pass ends (it may still be waiting out the window)
    leader = wait_for(daemon_leads, timeout=30)
    assert isinstance(leader, dict)
    status = subprocess.run(
        [sys.executable, "-m", "mirror", "status", "--config", str(paths[0])],
        cwd=ROOT, capture_output=True, text=True, env=os.environ,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"leader: {leader['owner']}" in status.stdout
    assert "docker.io|127.0.0.1" in status.stdout  # the quota, keyed by the counted address
    assert status.stdout.count("daemon@") >= 3  # the leader line and both processes
    for daemon in daemons:
        assert daemon.stop() == 0
    assert table().query("lease") == []  # both gave up what they held when they stopped


def test_a_daemon_killed_mid_copy_is_taken_over_within_the_lease(
    aws, hub, target, seeder, write_config, daemon_for
):
    digests = {
        f"big{i}:1": seeder.push(f"library/big{i}", "1", Image([random_blob(3 * MIB)]))
        for i in range(3)
    }
    hub.cdn_mib_per_second = 0.5  # six seconds a layer: the kill lands mid-copy
    ports = [free_port(), free_port()]
    paths = [
        config(write_config, target, hub, list(digests), f"d{p}.yaml", daemon_section(p, "2s"))
        for p in ports
    ]
    doomed = daemon_for(paths[0], ports[0])
    doomed_owner = f":{doomed.process.pid}:"
    wait_for(
        lambda: any(
            str(lease["sk"]).startswith("repository:") and doomed_owner in str(lease["owner"])
            for lease in leases()
        ),
        timeout=30,
    )
    survivor = daemon_for(paths[1], ports[1])
    wait_for(lambda: survivor.health()["passes"] >= 0, timeout=20)  # it is up and checking
    time.sleep(1)
    doomed.process.kill()  # kill -9: no lease is given up
    doomed.process.wait()
    killed_at = time.monotonic()
    hub.cdn_mib_per_second = None

    wait_for(lambda: faithful(target, digests), timeout=40)
    took = time.monotonic() - killed_at
    assert took < 5 + 2 + 6  # the lease TTL, one interval, and the copy itself
    for name in digests:  # every tag pulls whole
        skopeo.copy_all_verifies(target.host, f"{HUB}/{name}")
    now = time.time()
    left = [lease for lease in leases() if doomed_owner in str(lease["owner"])]
    assert all(float(str(lease["expires_at"])) < now for lease in left)  # expired, or taken over
    assert survivor.stop() == 0


def test_a_3000_image_no_op_pass_by_two_shards_never_exceeds_the_configured_rate(
    aws, hub, upstream, tmp_path
):
    rate, count = 200, 3000
    tags = [f"t{i}" for i in range(count)]
    image = Image([random_blob(512)])
    with LocalRegistry() as target:
        for registry, repository in ((upstream, "library/many"), (target, f"{HUB}/many")):
            seeder = Seeder(registry.url)
            for blob in image.blobs():
                seeder.blob(repository, blob)
            tag_it = partial(seeder.manifest, repository, raw=image.manifest,
                             media_type=image.media_type)  # fmt: skip
            with ThreadPoolExecutor(8) as pool:  # the target holds every tag already
                list(pool.map(tag_it, tags))
            seeder.close()
        path = tmp_path / "many.yaml"
        path.write_text(
            "version: 1\n"
            f"target: {{kind: registry, registry_url: '{target.url}'}}\n"
            f"registries:\n  docker.io: {{url: '{hub.url}', requests_per_second: {rate}}}\n"
            f"coordination: {{dynamodb_table: {TABLE}}}\n"
            "concurrency: {images: 8}\n"
            f"images:\n  - image: many\n    tags: [{', '.join(tags)}]\n"
        )
        hub.reset_counters()
        started = time.monotonic()
        shards = [sync(path, tmp_path / f"s{i}.json", "--shard", f"{i}/2") for i in range(2)]
        for i, shard in enumerate(shards):
            finished(shard, tmp_path / f"s{i}.json", timeout=120)
        took = time.monotonic() - started

    reports = [json.loads((tmp_path / f"s{i}.json").read_text()) for i in range(2)]
    assert sum(r["summary"]["skipped"] for r in reports) == count
    times = hub.counters.request_times
    windows = {str(i["sk"]): int(i["used"]) for i in table().query("pace")}
    # Sent: every request took a token of its second from the table, and no second of the
    # clock gave out more than the rate between the two processes.
    assert len(times) <= sum(windows.values())
    assert max(windows.values()) <= rate
    # Seen: the front stamps a request when its handler thread runs, after its own
    # queueing under this load, so one sent in a second's last milliseconds may be
    # stamped in the next. Each of the check workers (two shards of `images: 8`) has at
    # most one request in flight, so at most that many cross any boundary: each second
    # seen is held to the rate plus those, and the seconds together to the rate.
    in_flight = 2 * 8
    per_second = Counter(math.floor(t) for t in times)
    assert max(per_second.values()) <= rate + in_flight, sorted(per_second.values())[-5:]
    assert len(times) <= rate * len(per_second)
    assert took >= count / rate - 1  # it was paced: 3000 at 200 a second
