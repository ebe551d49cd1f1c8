"""Every user-facing failure is one sentence with the exit code the README gives, never a
traceback, and nothing half-done: a broken pipe never stops a pass, a report or output that
cannot be written is refused before work or names its path, and leaves no stray file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirror.console.cli import main
from tests.support import skopeo
from tests.support.images import Image, random_blob

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HUB_PREFIX = "mirror/docker-hub/library"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_sentence(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("mirror: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture
def synced(hub, target, seeder, write_config, capsys):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = write_config(target, "- nginx:1.16", docker_io=hub.url)
    assert run(capsys, "sync", "--config", str(config))[0] == 0
    hub.reset_counters()
    return config


def test_mirror_alone_prints_the_help(capsys):
    code, out, err = run(capsys)
    assert code == 2 and out.startswith("usage: mirror") and "sync" in out and not err


def test_global_options_may_come_before_the_command(synced, capsys):
    code, out, _ = run(capsys, "--config", str(synced), "validate")
    assert code == 0 and ": valid, 1 image entries" in out


@pytest.mark.parametrize("where", ["directory", "under a file"])
def test_a_report_that_cannot_be_written_is_refused_before_any_pull(
    where, synced, hub, tmp_path, capsys
):
    (tmp_path / "notes.txt").write_text("")
    report = tmp_path if where == "directory" else tmp_path / "notes.txt" / "report.json"
    code, _, err = run(capsys, "sync", "--config", str(synced), "--report", str(report))
    assert code == 2
    assert_one_sentence(err, f"--report {report}")
    assert hub.counters.requests == []  # nothing was asked upstream
    assert not list(tmp_path.glob(".report-*")) and not list(tmp_path.glob(".*.json.*"))


@pytest.mark.parametrize(
    ("buildspec", "key"),
    [
        ("version: 0.2\nphases:\n  - install\n", "phases must be a mapping"),
        ("version: 0.2\nphases:\n  pre_build:\n    commands: echo hi\n", "commands must be a list"),
        ("version: 0.2\nphases:\n  pre_build: [echo]\n", "pre_build must be a mapping"),
    ],
)
def test_a_buildspec_of_the_wrong_shape_is_named_not_a_traceback(
    buildspec, key, synced, tmp_path, capsys
):
    path = tmp_path / "buildspec.yml"
    path.write_text(buildspec)
    code, _, err = run(capsys, "buildspec", "--config", str(synced), "--merge", str(path))
    assert code == 2
    assert_one_sentence(err, key, str(path))
    assert path.read_text() == buildspec  # untouched


def test_an_output_that_cannot_be_written_names_its_path_and_leaves_nothing(
    synced, tmp_path, capsys
):
    directory = tmp_path / "out"
    directory.mkdir()
    code, _, err = run(capsys, "lock", "--config", str(synced), "--output", str(directory))
    assert code == 1
    assert_one_sentence(err, f"--output {directory}")
    assert list(directory.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} == {"out", "mirror.yaml"}
    code, _, err = run(capsys, "buildspec", "--config", str(synced), "--output", "/proc/x/b.yml")
    assert code == 1
    assert_one_sentence(err, "--output /proc/x/b.yml")


def test_an_output_to_a_missing_bucket_is_named(synced, aws, capsys):
    code, _, err = run(
        capsys,
        "lock",
        "--config",
        str(synced),
        "--output",
        "s3://missing-bucket/mirror.include.lock",
    )
    assert code == 1
    assert_one_sentence(err, "--output s3://missing-bucket/mirror.include.lock", "NoSuchBucket")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["sync", "--config", "/nonexistent/mirror.yaml"], 2),
        (["sync", "--shard", "3/2"], 2),
        (["plan", "--max-wait", "soon"], 2),
        (["nosuch"], 2),
    ],
)
def test_bad_command_lines_are_usage_errors(argv, code, capsys):
    got, _, err = run(capsys, *argv)
    assert got == code
    assert "Traceback" not in err and err.strip()


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_reader_that_goes_away_never_stops_the_pass(
    log_format, hub, target, seeder, write_config
):
    digests = {
        name: seeder.push(f"library/{name}", "1", Image([random_blob(200_000)]))
        for name in ("a", "b", "c", "d")
    }
    config = write_config(target, "\n".join(f"- {n}:1" for n in digests), docker_io=hub.url)
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", "sync", "--config", str(config),
         "--log-format", log_format],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    code = process.wait(timeout=60)
    err = process.stderr.read().decode()

    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Logging error" not in err
    for name, digest in digests.items():  # the pass went on to the end
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/{name}:1") == digest


def test_the_live_display_shows_bytes_and_who_waits_for_quota_and_a_pipe_gets_plain_lines(
    hub, target, seeder, mirror, write_config
):
    hub.limit, hub.window = 1, 3  # the second image waits for the next window
    for name in ("a", "b"):
        seeder.push(f"library/{name}", "1", Image([random_blob(2 << 20)]))
    config = write_config(target, "- a:1\n- b:1", docker_io=hub.url)

    drawn = mirror("sync", "--progress", "always", config=config)

    assert drawn.code == 0, drawn.err
    assert "docker.io: 1 image wait" in drawn.err and "for quota, max-wait left" in drawn.err
    assert "MiB" in drawn.err and "images done:" in drawn.err
    assert drawn.out.count("copied     docker.io/library/") == 2  # the lines still print

    hub.reset_counters()
    plain = mirror("sync", config=config)  # stderr is not a terminal here: no display
    assert plain.code == 0 and "\x1b[" not in plain.err and "images done" not in plain.err


def _every_command() -> list[str]:
    from mirror.console.cli import COMMANDS

    return sorted(COMMANDS)


@pytest.mark.parametrize("command", _every_command())
def test_every_command_with_a_config_that_does_not_exist_is_one_sentence(command, capsys):
    argv = [command, "--config", "/nonexistent/mirror.yaml"]
    if command == "copy":
        argv.insert(1, "nginx:1.16")
    if command == "health":  # asks a daemon, reads no config it cannot find
        argv += ["--port", "1"]
    code, out, err = run(capsys, *argv)
    assert code == (1 if command == "health" else 2), (out, err)
    assert "Traceback" not in out + err
    if command == "health":
        assert "no daemon answering" in out
    else:
        assert_one_sentence(err, "/nonexistent/mirror.yaml")


def test_ratelimit_speaks_json_when_asked(synced, capsys):
    code, out, _ = run(capsys, "ratelimit", "--config", str(synced), "--log-format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["registry"] == "docker.io" and row["remaining"] is not None


def test_images_failed_while_the_target_is_down_say_where_they_were_going(
    hub, target, write_config, mirror
):
    config = write_config(
        target,
        """
        - nginx:1.16
        - {image: python, tags: ["3.12"], platforms: [linux/arm64]}
        """,
        docker_io=hub.url,
        extra="timeouts: {unreachable: 1s}\n",  # how long it waits is not the point here
    )
    target.stop()

    run = mirror("sync", config=config)

    assert run.code == 1
    host = target.url.split("//", 1)[1]
    nginx, python = run.report["images"]
    assert nginx["target"] == f"{host}/{HUB_PREFIX}/nginx:1.16"
    assert nginx["platforms"] == "all"
    assert python["target"] == f"{host}/{HUB_PREFIX}/python"  # a tag list: its repository
    assert python["platforms"] == "linux/arm64"
    assert {nginx["action"], python["action"]} == {"failed"}
