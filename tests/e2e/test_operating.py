"""Operating the daemon and the scheduled sync on AWS: health that means liveness, EMF
metrics CloudWatch can alarm on, one summary event and one run id per pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import daemon_config, wait_for
from tests.support.emf import validate_emf
from tests.support.images import Image, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_missing_image_is_reported_but_only_an_unreachable_target_makes_the_daemon_unhealthy(
    hub, target, seeder, write_config, daemon_for
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    port = free_port()
    config = daemon_config(
        write_config, target, hub, "- nginx:1.16\n- nosuch:1", port,
        extra="  unhealthy_after: 1\ntimeouts: {unreachable: 1s}\n",
    )  # fmt: skip
    daemon = daemon_for(config, port)

    # two failed passes, more than unhealthy_after: a missing image never makes it unhealthy
    wait_for(lambda: daemon.health()["passes"] >= 2, timeout=30)
    health = daemon.health()
    assert health["status"] == "ok" and health["problems"] == []
    assert health["last_pass_failed"] is True
    assert health["failed_images"] == [
        {"source": "docker.io/library/nosuch:1", "code": "MANIFEST_UNKNOWN"}
    ]

    target.kill()
    passes = daemon.health()["passes"]
    down = wait_for(lambda: (h := daemon.health())["status"] == "unhealthy" and h, timeout=60)
    # one unreachable pass is enough here; the count over passes is a unit test
    assert down["target_unreachable_passes"] >= 1 and down["passes"] >= passes + 1
    assert "the target was unreachable" in down["problems"][0]
    assert httpx_status(port) == 503

    target.start()
    wait_for(lambda: daemon.health()["status"] == "ok", timeout=30)
    assert httpx_status(port) == 200
    assert daemon.stop() == 0

    events = daemon.events()
    passes_done = [e for e in events if e["event"] == "pass_done"]
    assert passes_done and all(e["failures"] for e in passes_done)
    run_ids = {e["run_id"] for e in passes_done}
    assert len(run_ids) == len(passes_done)  # one id per pass...
    by_run = {e["run_id"] for e in events if e["event"] == "image_done"}
    assert by_run <= run_ids  # ...carried by the pass's image lines
    heartbeats = [e for e in events if e["event"] == "metrics" and set(e) >= {"Heartbeat"}]
    assert heartbeats
    for document in heartbeats:
        validate_emf(document)


def httpx_status(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code


def test_a_json_sync_ends_with_pass_done_and_valid_emf_documents_under_one_run_id(
    hub, target, seeder, write_config, mirror, monkeypatch
):
    seeder.push("library/nginx", "1.16", Image([random_blob(2000)]))
    monkeypatch.setenv("MIRROR_METRICS_SERVICE", "mirror-prod")
    config = write_config(target, "- nginx:1.16\n- nosuch:1", docker_io=hub.url)

    run = mirror("sync", "--log-format", "json", config=config)

    assert run.code == 1
    lines = json_lines(run.out)
    assert len({line["run_id"] for line in lines}) == 1
    (done,) = [line for line in lines if line["event"] == "pass_done"]
    assert done["level"] == "warning" and done["copied"] == 1 and done["failed"] == 1
    assert done["failures"] == [
        {"source": "docker.io/library/nosuch:1", "code": "MANIFEST_UNKNOWN"}
    ]
    assert done["upstream_pulls"] == {"docker.io": 1}
    documents = [line for line in lines if line["event"] == "metrics"]
    for document in documents:
        validate_emf(document)
    totals, registry = documents
    assert totals["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "mirror"
    assert totals["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service"]]
    assert totals["Service"] == "mirror-prod"
    assert (totals["ImagesCopied"], totals["ImagesFailed"], totals["Heartbeat"]) == (1, 1, 1)
    assert totals["BytesCopied"] == run.report["summary"]["bytes"] > 2000
    assert registry["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service", "Registry"]]
    assert (registry["Registry"], registry["UpstreamPulls"]) == ("docker.io", 1)
    assert registry["QuotaRemaining"] == hub.limit - hub.counters.manifest_gets


def test_a_plan_and_a_console_sync_write_no_metrics(hub, target, seeder, write_config, mirror):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    planned = mirror("plan", "--log-format", "json", config=config)
    synced = mirror("sync", config=config)

    assert [line["event"] for line in json_lines(planned.out)][-1] == "pass_done"
    assert not [line for line in json_lines(planned.out) if line["event"] == "metrics"]
    assert synced.code == 0 and "_aws" not in synced.out + synced.err


def test_metrics_can_be_turned_off_and_a_bad_namespace_is_a_usage_error(
    hub, target, seeder, write_config, mirror, monkeypatch
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    off = write_config(target, "- nginx:1.16", docker_io=hub.url, extra="metrics:\n  emf: false\n")
    assert "_aws" not in mirror("sync", "--log-format", "json", config=off).out

    monkeypatch.setenv("MIRROR_METRICS_NAMESPACE", "AWS/ECR")
    refused = mirror("sync", "--log-format", "json", config=Path(off))
    assert refused.code == 2
    assert "MIRROR_METRICS_NAMESPACE" in refused.err and "AWS/" in refused.err
    assert hub.counters.manifest_gets == 1  # the refusal pulled nothing
