"""The command line as a new platform team meets it: tag rules they actually write, the
live display on a real terminal, platforms that converge, and errors before any work."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.support import skopeo
from tests.support.images import Image, Index, random_blob

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HUB = "mirror/docker-hub/library"
MIB = 2**20

# A realistic base-image set, each family as its upstream tags it (a slice).
NODE = [
    f"{v}-{variant}"
    for v in ("18.20.5", "20.17.0", "20.18.0", "20.18.1", "20.18", "20", "22.11.0", "22.12.0",
              "22.12", "22", "23.4.0")
    for variant in ("alpine", "slim", "bookworm")
]  # fmt: skip
PYTHON = [
    f"{v}-slim"
    for v in ("3.10.16", "3.11.11", "3.11", "3.12.7", "3.12.8", "3.12", "3.13.1", "3.13")
] + ["3.14.0a3-slim", "3.13-slim-bookworm"]
RULES = """\
- image: node                       # the two newest minors of 20 and 22, alpine and slim
  tags: {semver: "^20 || ^22", variant: [alpine, slim], latest: 2, per: major, floating: true}
- image: python                     # the newest patch of 3.11 to 3.13, slim
  tags: {semver: ">=3.11 <3.14", variant: slim, latest: 1, per: minor, floating: true}
- image: nginx
  tags: {semver: "~1.27", latest: 1}
- redis:7.4
- busybox:1.37
- ghcr.io/org/tool:2.1
"""


def test_a_new_users_base_image_set_resolves_with_one_rule_per_family(
    hub, target, seeder, mirror, write_config
):
    small = Image([random_blob(100)])
    for repository, tags in (
        ("library/node", NODE),
        ("library/python", PYTHON),
        ("library/nginx", ["1.26.2", "1.27.2", "1.27.3", "1.27", "mainline"]),
    ):
        for tag in tags:
            seeder.push(repository, tag, small)
    config = write_config(
        target, RULES, extra=f"registries:\n  docker.io:\n    url: {hub.url}\n  ghcr.io:\n"
        f"    url: {hub.url}\n"
    )  # fmt: skip

    run = mirror("validate", "--resolve", config=config)

    assert run.code == 0, run.err
    picks = [line.strip() for line in run.out.splitlines() if "picks" in line]
    assert picks == [
        "picks 16: 22.12.0-alpine, 22.11.0-alpine, 20.18.1-alpine, 20.17.0-alpine, "
        "22.12-alpine, 22-alpine, 20.18-alpine, 20-alpine, 22.12.0-slim, 22.11.0-slim, "
        "20.18.1-slim, 20.17.0-slim, 22.12-slim, 22-slim, 20.18-slim, 20-slim",
        "picks 6: 3.13.1-slim, 3.12.8-slim, 3.11.11-slim, 3.13-slim, 3.12-slim, 3.11-slim",
        "picks 1: 1.27.3",
    ]
    assert "22.11-alpine" not in run.out  # a floating tag the upstream lacks is not made up
    assert hub.counters.manifest_gets == 0  # listing tags spends no pull


def test_a_rule_without_floating_says_which_floating_tags_it_leaves_out(
    hub, target, seeder, mirror, write_config
):
    for tag in NODE:
        seeder.push("library/node", tag, Image([random_blob(100)]))
    rule = '- image: node\n  tags: {semver: "^22", variant: alpine, latest: 1, per: major}'
    config = write_config(target, rule, docker_io=hub.url)

    run = mirror("validate", "--resolve", config=config)

    assert run.code == 0, run.err
    assert "picks 1: 22.12.0-alpine" in run.out
    assert "not picked, though Dockerfiles often name them: 22.12-alpine, 22-alpine" in run.out


def on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run mirror with stdout and stderr on a pseudo-terminal, as a person at one does."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args], cwd=ROOT, stdin=follower, stdout=follower,
        stderr=follower, env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"},
    )  # fmt: skip
    os.close(follower)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.wait(timeout=60), seen.decode(errors="replace")


def test_the_live_display_draws_on_a_terminal_by_default(
    hub, target, seeder, write_config, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(6 * MIB)]))
    hub.cdn_mib_per_second = 3.0  # two seconds of copying: several refreshes
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)

    code, screen = on_a_terminal(["sync", "--config", str(config)])  # --progress auto

    assert code == 0, screen
    assert "images done: 0 of 1" in screen  # the overall line, with its count
    assert "MiB" in screen and "docker.io/library/nginx:1.16" in screen
    assert "copied" in screen and "sync: 1 copied" in screen


def test_narrowing_and_widening_platforms_rewrites_the_index_without_pulling_it_again(
    hub, target, seeder, mirror, write_config
):
    index = Index(
        [
            Image([random_blob(500)]),
            Image([random_blob(500)], architecture="arm64"),
            Image([random_blob(500)], architecture="arm", variant="v7"),
        ]
    )
    digest = seeder.push("library/nginx", "1.16", index)

    def synced(platforms: str) -> dict[str, object]:
        hub.reset_counters()
        image = f"- image: nginx:1.16\n  platforms: {platforms}"
        run = mirror("sync", config=write_config(target, image, docker_io=hub.url))
        assert run.code == 0, run.out
        return run.image("nginx:1.16")

    def platforms_in_target() -> list[str]:
        raw = skopeo.raw_manifest(target.host, f"{HUB}/nginx:1.16")
        return [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]]

    assert synced("all")["action"] == "copied"
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest

    narrowed = synced("[linux/amd64, linux/arm64]")
    assert narrowed["action"] == "copied" and narrowed["upstream_digest"] == digest
    assert platforms_in_target() == ["amd64", "arm64"]
    assert hub.counters.manifest_gets == 0  # filtered from the target's own copy

    assert synced("[linux/amd64, linux/arm64]")["action"] == "skipped"  # and it stays so
    narrower = synced("[linux/amd64]")
    assert narrower["action"] == "copied" and platforms_in_target() == ["amd64"]
    assert hub.counters.manifest_gets == 0  # a narrowing of a narrowing: still no pull

    widened = synced("[linux/amd64, linux/arm/v7]")
    assert widened["action"] == "copied" and platforms_in_target() == ["amd64", "arm"]
    assert hub.counters.manifest_gets == 1  # the index again; its children were there

    assert synced("all")["action"] == "copied"
    assert skopeo.raw_digest(target.host, f"{HUB}/nginx:1.16") == digest  # bytes as upstream
    skopeo.copy_all_verifies(target.host, f"{HUB}/nginx:1.16")


def test_a_report_in_a_directory_that_does_not_exist_is_refused_before_any_work(
    hub, target, seeder, write_config, tmp_path, capsys
):
    from mirror.console.cli import main

    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)
    report = tmp_path / "reprots" / "sync.json"  # a typo

    code = main(["sync", "--config", str(config), "--report", str(report)])

    assert code == 2
    assert f"--report {report}: the directory {report.parent} does not exist" in (
        capsys.readouterr().err
    )
    assert not report.parent.exists()  # nothing created
    assert hub.counters.requests == []  # and nothing asked upstream


def test_plan_says_what_a_sync_would_spend_not_what_it_copied(
    hub, target, seeder, mirror, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    seeder.push(
        "library/python", "3.12", Index([Image([random_blob(100)]), Image([random_blob(100)])])
    )
    config = write_config(target, "- nginx:1.16\n- python:3.12", docker_io=hub.url)

    run = mirror("plan", config=config)

    assert run.code == 0
    assert "MiB copied" not in run.out
    assert "plan: 2 would-copy; a sync would spend 2 or more (an index's missing children) " in (
        run.out
    )
