"""The include's side of copy on miss, run in sh: where an image the mirror lacks would
land (the shell works it out as mirror's Python does), what reaches `aws sqs
send-message`, and what each MIRROR_ON_MISS does when nothing arrives."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from mirror.config import Config, load_config
from mirror.engine.naming import target_reference
from mirror.engine.ondemand import NOT_ALLOWED, REFUSED_ANNOTATION, REFUSED_AT_ANNOTATION
from mirror.errors import MirrorError
from mirror.include.buildspec import only_used, render_fragment, render_script
from mirror.include.dockerfile import BaseImage
from mirror.include.misses import miss_functions
from mirror.oci.reference import parse_reference

QUEUE = "https://sqs.eu-west-1.amazonaws.com/111122223333/mirror-misses"
CONFIG = f"""\
version: 1
target: {{kind: registry, registry_url: "http://127.0.0.1:9", repository_prefix: mirror}}
on_demand:
  queue_url: {QUEUE}
  allow: [docker.io/library/*]
images: [nginx:1.16]
"""
DIGEST = "sha256:" + "a" * 64
REFERENCES = [
    "redis",
    "redis:7.4",
    "library/redis:7.4",
    "docker.io/redis:7",
    "index.docker.io/library/redis:7",
    "registry-1.docker.io/library/redis:7",
    "quay.io/prometheus/node-exporter:v1.8.2",
    f"ghcr.io/org/tool@{DIGEST}",
    f"redis:7.4@{DIGEST}",
    "localhost:5000/a/b:c",
    "localhost/a:b",
    "registry.k8s.io/pause:3.9",
    "myhost.example.com:8443/team/app:1.0",
    "UPPER.example.com/a:b",
    "[::1]:5000/a:b",
    "public.ecr.aws/docker/library/redis:7",
    "registry.gitlab.com/g/p/q/r:1",
    "a__b/c-d---e:f_G.1",
    "a/b/c/d:e",
    "x" * 250 + ":1",  # its path in the mirror is too long for a repository
    # outside the grammar: never reported
    "Redis:7",
    "redis:",
    "re dis",
    "foo..bar/x",
    "x@sha256:abc",
    "-x:1",
    "a" * 300,
    "redis:" + "t" * 129,
    "$(touch PWNED)",
    "`touch PWNED`",
    "a;touch PWNED",
    "redis:7\ntouch PWNED",
    "'",
    "",
]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "mirror.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def python_answer(written: str) -> str:
    """What mirror's own parser and naming say: the path in the mirror and the fully
    qualified name, or NO."""
    try:
        source = parse_reference(written)
    except MirrorError:
        return "NO"
    repository = target_reference(source, "R", "mirror").repository
    if len(repository) > 255:
        return "NO"
    at = f"@{source.digest}" if source.digest else f":{source.tag}"
    return f"OK {repository}{at} {source.registry}/{source.repository}{at}"


def test_the_shell_places_a_missed_image_where_mirror_copies_it(config, tmp_path):
    script = "\n".join(miss_functions(config, QUEUE)) + (
        '\nfor r in "$@"; do if out=$(mirror_parse "$r"); then echo "OK $out"; '
        "else echo NO; fi; done\n"
    )
    done = subprocess.run(
        ["sh", "-c", script, "sh", *REFERENCES], capture_output=True, text=True, cwd=tmp_path
    )
    shell = done.stdout.splitlines()
    assert len(shell) == len(REFERENCES), done.stderr
    assert {w: s for w, s in zip(REFERENCES, shell, strict=True)} == {
        w: python_answer(w) for w in REFERENCES
    }
    assert shell.count("NO") >= 14  # the hostile half is refused, not mangled
    assert not (tmp_path / "PWNED").exists()


SHIMS = {
    "aws": '#!/bin/sh\nprintf "%s\\n" "$*" >> "$CALLS"\n',
    # no image in the mirror; a refusal when the test put one in REFUSAL
    "docker": '#!/bin/sh\nprintf "docker %s\\n" "$*" >> "$CALLS"\n'
    'if [ "$1 $2" = "manifest inspect" ] && [ -n "${REFUSAL:-}" ]; then\n'
    '  printf "%s\\n" "$REFUSAL"; exit 0\nfi\nexit 1\n',
    "sleep": "#!/bin/sh\n:\n",  # waits take no time here
}


def run_include(config: Config, tmp_path: Path, *wanted: str, **env: str):
    script = tmp_path / "pull.sh"
    script.write_text(render_script(config, "127.0.0.1:9", []))
    shims = _shims(tmp_path)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    done = subprocess.run(
        ["sh", str(script), *wanted],
        env={"PATH": f"{shims}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path),
             "AWS_REGION": "eu-west-1", **env},
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    return done, calls.read_text().splitlines()


def reports(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("sqs send-message")]


def test_the_include_with_on_demand_passes_shellcheck(config, tmp_path):
    script = tmp_path / "pull.sh"
    script.write_text(render_script(config, "127.0.0.1:9", []))
    checked = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode()


def test_fail_reports_the_miss_and_fails_the_build_naming_the_image(config, tmp_path):
    done, calls = run_include(
        config, tmp_path, "redis:7.4", MIRROR_ON_MISS="fail",
        CODEBUILD_BUILD_ARN="arn:aws:codebuild:eu-west-1:111122223333:build/app-ci:0f1e",
    )  # fmt: skip

    assert done.returncode == 1
    assert "redis:7.4 is not mirrored (MIRROR_ON_MISS=fail)" in done.stderr
    (sent,) = reports(calls)
    assert f"--queue-url {QUEUE} --region eu-west-1 --message-body" in sent
    body = json.loads(sent.split("--message-body ", 1)[1])
    assert (body["version"], body["image"]) == (1, "redis:7.4")
    assert (body["project"], body["account"], body["build"]) == (
        "app-ci", "111122223333", "app-ci:0f1e"
    )  # fmt: skip


def test_upstream_reports_and_lets_the_build_go_on(config, tmp_path):
    done, calls = run_include(config, tmp_path, "redis:7.4", MIRROR_ON_MISS="upstream")
    assert done.returncode == 0, done.stderr
    assert "the build pulls it upstream now" in done.stderr
    assert len(reports(calls)) == 1


def test_a_wait_that_runs_out_pulls_upstream_or_fails_when_strict(config, tmp_path):
    done, calls = run_include(config, tmp_path, "redis:7.4", MIRROR_ON_MISS="wait:0")
    assert done.returncode == 0, done.stderr
    assert "redis:7.4: not copied within 0s; the build pulls it upstream" in done.stderr
    assert any(c.startswith("docker pull") for c in calls)  # it looked in the mirror

    strict, _ = run_include(
        config, tmp_path, "redis:7.4", MIRROR_ON_MISS="wait:0", MIRROR_STRICT="1"
    )
    assert strict.returncode == 1
    assert "add it to images: in mirror.yaml, or to on_demand.allow" in strict.stderr


@pytest.mark.parametrize("mode", ["wait", "wait:soon", "later", "wait:-1"])
def test_a_mistyped_mirror_on_miss_fails_saying_what_to_write(config, tmp_path, mode):
    done, calls = run_include(config, tmp_path, "redis:7.4", MIRROR_ON_MISS=mode)
    assert done.returncode == 1
    assert f"MIRROR_ON_MISS={mode}: write wait:SECONDS" in done.stderr
    assert reports(calls) == []  # nothing sent for a typo


@pytest.mark.parametrize(
    "hostile", ["$(touch PWNED)", "redis:7;touch PWNED", "a b", 'redis:7"}', "Redis:7"]
)
def test_a_reference_outside_the_grammar_is_never_reported_nor_run(config, tmp_path, hostile):
    done, calls = run_include(config, tmp_path, hostile, MIRROR_ON_MISS="upstream")
    assert done.returncode == 0, done.stderr
    assert "not an image reference the mirror can copy" in done.stderr
    assert reports(calls) == []
    assert not (tmp_path / "PWNED").exists()


def refusal(at: float) -> str:
    """A refusal manifest as `docker manifest inspect` prints it (indented)."""
    annotations = {REFUSED_ANNOTATION: NOT_ALLOWED, REFUSED_AT_ANNOTATION: str(int(at))}
    return json.dumps({"schemaVersion": 2, "annotations": annotations}, indent=3)


def test_a_refusal_written_after_the_report_ends_the_wait_and_an_older_one_does_not(
    config, tmp_path
):
    fresh, calls = run_include(
        config, tmp_path, "redis:7.4", MIRROR_ON_MISS="wait:600", REFUSAL=refusal(time.time())
    )
    assert fresh.returncode == 0, fresh.stderr
    assert f"redis:7.4: refused by the mirror: {NOT_ALLOWED}; the build pulls it" in fresh.stderr
    key = hashlib.sha256(b"redis:7.4").hexdigest()
    assert f"docker manifest inspect 127.0.0.1:9/mirror/on-demand/refused:r-{key}" in calls

    # yesterday's refusal (a cap since lifted, an allow list since widened) is not heeded
    stale, _ = run_include(
        config, tmp_path, "redis:7.4", MIRROR_ON_MISS="wait:0",
        REFUSAL=refusal(time.time() - 86400),
    )  # fmt: skip
    assert stale.returncode == 0, stale.stderr
    assert "refused by the mirror" not in stale.stderr
    assert "not copied within 0s" in stale.stderr


def test_the_fragment_reports_what_the_dockerfiles_use_and_the_config_lacks(config, tmp_path):
    used = [BaseImage("redis:7.4", 1, path="Dockerfile"), BaseImage(f"alpine@{DIGEST}", 2)]
    pulls, warnings = only_used(config, [], used)

    assert [(p.path, p.names, p.pending) for p in pulls] == [
        ("mirror/docker-hub/library/redis:7.4",
         ("redis:7.4", "docker.io/library/redis:7.4"), True),
        (f"mirror/docker-hub/library/alpine@{DIGEST}", (), True),  # a digest: no local tag
    ]  # fmt: skip
    assert "Dockerfile:1: redis:7.4 is not in the config: builds report it" in warnings[0]
    fragment = render_fragment(config, "127.0.0.1:9", pulls)
    commands = "\n".join(_commands(fragment))
    script = tmp_path / "fragment.sh"
    script.write_text(commands + "\n")
    checked = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode()

    done = subprocess.run(
        ["sh", "-e", str(script)],
        env={"PATH": f"{_shims(tmp_path)}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"),
             "HOME": str(tmp_path), "AWS_REGION": "eu-west-1", "MIRROR_ON_MISS": "upstream"},
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sent = reports((tmp_path / "calls").read_text().splitlines())
    assert [json.loads(c.split("--message-body ", 1)[1])["image"] for c in sent] == [
        "docker.io/library/redis:7.4", f"docker.io/library/alpine@{DIGEST}"
    ]  # fmt: skip


def _commands(fragment: str) -> list[str]:
    from ruamel.yaml import YAML

    return list(YAML(typ="safe").load(fragment)["phases"]["pre_build"]["commands"])


def _shims(tmp_path: Path) -> Path:
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    for name, body in SHIMS.items():
        (shims / name).write_text(body)
        (shims / name).chmod(0o755)
    return shims
