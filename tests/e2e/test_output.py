"""What a person and a log collector see: JSON logs, reports, and no secret anywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from mirror import __version__
from tests.support.images import Image, random_blob

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_json_logs_carry_one_event_per_image_and_no_secret(
    hub, target, seeder, mirror, write_config, hub_account
):
    hub_account("dckr_pat_very-secret")
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    config = write_config(
        target,
        "- nginx:1.16\n- nosuch:1",
        extra=f"""
        registries:
          docker.io:
            url: {hub.url}
            credentials: {{username_env: HUB_USER, password_env: HUB_TOKEN}}
        """,
    )

    run = mirror("sync", "--log-format", "json", "-v", config=config)

    assert run.code == 1
    events = [json.loads(line) for line in run.out.splitlines()]
    per_image = [e for e in events if e["event"] in ("image_done", "image_failed")]
    assert sorted(e["source"] for e in per_image) == [
        "docker.io/library/nginx:1.16",
        "docker.io/library/nosuch:1",
    ]
    tokens = list(hub._tokens)
    assert tokens and all(hub._tokens[t][0] == "ci-bot" for t in tokens)
    everything = run.out + run.err + json.dumps(run.report)
    for secret in ["dckr_pat_very-secret", *tokens]:
        assert secret not in everything


def test_the_report_lists_every_field_a_user_reads(hub, target, seeder, mirror, write_config):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    run = mirror("sync", config=write_config(target, "- nginx:1.16", docker_io=hub.url))

    image = run.image("nginx:1.16")
    assert set(image) >= {
        "source", "target", "action", "upstream_digest", "target_digest", "platforms", "bytes",
        "blobs_copied", "blobs_mounted", "blobs_skipped", "upstream_manifest_gets", "seconds",
    }  # fmt: skip
    assert run.report["summary"]["copied"] == 1
    assert "copied     docker.io/library/nginx:1.16" in run.out
    assert "sync: 1 copied" in run.out


def test_the_readme_demo_runs_end_to_end_and_can_keep_its_registries_to_explore():
    demo = subprocess.Popen(
        [sys.executable, "-m", "tests.support.demo", "--keep"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        seen = ""
        while "Ctrl-C" not in seen:
            line = demo.stdout.readline()
            assert line, f"the demo ended early: {seen}{demo.stderr.read() if demo.stderr else ''}"
            seen += line
        assert "demo: OK" in seen and "0 on the re-sync" in seen
        # still up: the commands the demo suggests work against its registries
        resolved = subprocess.run(
            [sys.executable, "-m", "mirror", "validate", "--resolve", "--config",
             str(ROOT / "config" / "demo.yaml")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert resolved.returncode == 0, resolved.stderr
        assert "picks 2: v1.8.2, v1.8.1" in resolved.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=30)
    assert code == 0
    with pytest.raises(httpx.TransportError):  # and stopped with Ctrl-C
        httpx.get("http://127.0.0.1:5002/v2/", timeout=2)


def test_the_report_says_when_which_version_from_which_config_and_its_run_id(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    report = mirror("sync", config=config).report

    assert report["mirror_version"] == __version__ and report["config"] == str(config)
    started = datetime.fromisoformat(report["started_at"])
    finished = datetime.fromisoformat(report["finished_at"])
    assert started.tzinfo is not None and started <= finished
    assert len(report["run_id"]) == 16
