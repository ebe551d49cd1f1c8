"""`mirror buildspec`: what a CodeBuild build runs to find its FROM images locally."""

from __future__ import annotations

import base64
import gzip
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from ruamel.yaml import YAML

from mirror.include.publish import SSM_STANDARD_LIMIT
from tests.support import skopeo
from tests.support.fake_ecr import ECR_CREDS
from tests.support.images import Image, Index, Seeder, random_blob
from tests.support.registry import LocalRegistry
from tests.support.shims import Shims

pytestmark = pytest.mark.e2e

DOCKER_SHIM = """#!/usr/bin/env bash
echo "docker $*" >> "$SHIM_LOG"
if [ "$1" = login ]; then cat > /dev/null; fi
"""
AWS_SHIM = """#!/usr/bin/env bash
echo "aws $*" >> "$SHIM_LOG"
echo not-a-real-password
"""


@pytest.fixture
def quay() -> Iterator[LocalRegistry]:
    with LocalRegistry() as registry:
        yield registry


@pytest.fixture
def mirrored(ecr, hub, seeder, quay, tmp_path, mirror):
    """nginx:1.16 (Docker Hub), python:3.12 (an index) and a Quay image, synced to ECR;
    python:3.13 is configured but missing upstream, so never mirrored."""
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    seeder.push(
        "library/python",
        "3.12",
        Index([Image([random_blob(100)]), Image([random_blob(100)], architecture="arm64")]),
    )
    quay_seeder = Seeder(quay.url)
    quay_seeder.push("prometheus/node-exporter", "v1.8.2", Image([random_blob(100)]))
    quay_seeder.close()
    path = tmp_path / "mirror.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            target:
              kind: ecr
              region: us-east-1
              registry_url: {ecr.data_plane.url}
            registries:
              docker.io: {{url: {hub.url}}}
              quay.io: {{url: {quay.url}}}
            images:
              - nginx:1.16
              - image: python
                tags: ["3.12", "3.13"]
              - quay.io/prometheus/node-exporter:v1.8.2
            """
        )
    )
    assert mirror("sync", config=path).code == 1  # python:3.13 does not exist upstream
    return path


def test_the_buildspec_fragment_is_a_buildspec_with_pinned_pulls_and_the_config_names(
    mirrored, mirror
):
    run = mirror("buildspec", config=mirrored)

    assert run.code == 0
    document = YAML(typ="safe").load(run.out)
    assert document["version"] == 0.2
    commands = document["phases"]["pre_build"]["commands"]
    assert all(isinstance(c, str) for c in commands)
    assert any("aws ecr get-login-password" in c for c in commands)
    pulls = [c for c in commands if c.startswith("for attempt")]  # one retry loop an image
    assert len(pulls) == 3 and all("@sha256:" in c for c in pulls)
    tags = [c.rsplit(" ", 1)[1] for c in commands if c.startswith("docker tag")]
    assert tags == [
        "nginx:1.16", "docker.io/library/nginx:1.16", "python:3.12",
        "docker.io/library/python:3.12", "quay.io/prometheus/node-exporter:v1.8.2",
    ]  # fmt: skip
    assert "python:3.13: not mirrored yet" in run.err


def test_the_script_passes_shellcheck_and_pulls_exactly_what_is_mirrored(
    mirrored, mirror, ecr, tmp_path
):
    script = tmp_path / "pull.sh"
    run = mirror("buildspec", "--format", "script", "--output", str(script), config=mirrored)
    assert run.code == 0, run.err
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    checked = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout

    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in (("docker", DOCKER_SHIM), ("aws", AWS_SHIM)):
        (shims / name).write_text(body)
        (shims / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "SHIM_LOG": str(log)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert set(calls[:2]) == {  # the two ends of one pipe: either may log first
        "aws ecr get-login-password --region us-east-1",
        f"docker login --username AWS --password-stdin {ecr.host}",
    }
    pulled = [c.split()[-1] for c in calls if c.startswith("docker pull")]
    assert len(pulled) == 3
    for reference in pulled:
        host, path = reference.split("/", 1)
        assert host == ecr.host and "@sha256:" in path
        digest = path.split("@")[1]
        assert skopeo.raw_digest(ecr.data_plane.host, path, ECR_CREDS) == digest
    tagged = sorted(c.split()[-1] for c in calls if c.startswith("docker tag"))
    assert tagged == [
        "docker.io/library/nginx:1.16", "docker.io/library/python:3.12", "nginx:1.16",
        "python:3.12", "quay.io/prometheus/node-exporter:v1.8.2",
    ]  # fmt: skip


def test_a_failed_pull_names_the_image_and_fails_the_script(mirrored, mirror, tmp_path):
    script = tmp_path / "pull.sh"
    mirror("buildspec", "--format", "script", "--output", str(script), config=mirrored)
    text = script.read_text().replace("sleep $((attempt * 5))", "true")
    script.write_text(text)
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "docker").write_text('#!/usr/bin/env bash\n[ "$1" != pull ] || exit 1\ncat >/dev/null')
    (shims / "aws").write_text("#!/usr/bin/env bash\necho x\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}

    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)

    assert done.returncode != 0
    assert "could not pull" in done.stderr and "nginx:1.16" in done.stderr


def test_only_the_images_the_dockerfiles_use_and_a_warning_for_the_rest(
    mirrored, mirror, ecr, tmp_path
):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG V=1.16\nFROM nginx:${V} AS web\nFROM web\nFROM redis:7\nFROM scratch\n"
    )
    snippet = tmp_path / "mirror-contexts.sh"

    run = mirror(
        "buildspec", "--format", "build-context", "--dockerfile", str(dockerfile),
        "--output", str(snippet), config=mirrored,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert f"{dockerfile}:4: redis:7 is not in the config" in run.err
    checked = subprocess.run(
        ["shellcheck", "-s", "sh", str(snippet)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    shims = Shims(tmp_path)
    words = shims.build_contexts(snippet)
    assert len(words) == 4 and words[0] == words[2] == "--build-context"
    names = []
    for flag in (words[1], words[3]):
        name, _, ref = flag.partition("=")
        assert ref.startswith(f"docker-image://{ecr.host}/") and "@sha256:" in ref
        names.append(name)
    assert names == ["nginx:1.16", "docker.io/library/nginx:1.16"]
    # BuildKit resolves docker-image:// itself: the snippet logged in first, to that host.
    assert ["docker", "login", "--username", "AWS", "--password-stdin", ecr.host] in shims.calls()


BUILDSPEC = """\
# The app's buildspec
version: 0.2

env:
  variables:
    IMAGE: app   # the image name

phases:
  install:
    commands:
      - echo install   # install step
  pre_build:
    commands:
      # log in to our own registry first
      - echo existing
  build:
    commands:
      - docker build -t "$IMAGE" .
"""


def test_merging_keeps_every_comment_and_phase_and_twice_is_stable(mirrored, mirror, tmp_path):
    buildspec = tmp_path / "buildspec.yml"
    buildspec.write_text(BUILDSPEC)

    assert mirror("buildspec", "--merge", str(buildspec), config=mirrored).code == 0
    once = buildspec.read_text()
    assert mirror("buildspec", "--merge", str(buildspec), config=mirrored).code == 0
    twice = buildspec.read_text()

    assert once == twice
    for kept in (
        "# The app's buildspec",
        "# the image name",
        "# install step",
        "# log in to our own registry first",
    ):
        assert kept in twice
    document = YAML(typ="safe").load(twice)
    assert list(document["phases"]) == ["install", "pre_build", "build"]
    commands = document["phases"]["pre_build"]["commands"]
    assert commands[0] == "echo 'mirror: pulling mirrored base images'"
    assert commands[-1] == "echo existing"
    assert document["phases"]["build"]["commands"] == ['docker build -t "$IMAGE" .']


def test_publishing_to_s3_and_ssm(mirrored, mirror, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="builds")
    local = tmp_path / "pull.sh"
    mirror("buildspec", "--format", "script", "--output", str(local), config=mirrored)

    to_s3 = mirror(
        "buildspec", "--format", "script", "--output", "s3://builds/mirror/pull.sh",
        config=mirrored,
    )  # fmt: skip
    to_ssm = mirror(
        "buildspec", "--format", "script", "--output", "ssm:/mirror/pull-script",
        config=mirrored,
    )  # fmt: skip

    assert to_s3.code == to_ssm.code == 0
    body = s3.get_object(Bucket="builds", Key="mirror/pull.sh")["Body"].read().decode()
    assert body == local.read_text()
    # The script is over the 4 KB a Standard parameter holds: it is stored compressed,
    # as a script that unpacks and runs the same include.
    assert len(local.read_bytes()) > SSM_STANDARD_LIMIT
    parameter = boto3.client("ssm").get_parameter(Name="/mirror/pull-script")["Parameter"]
    value = parameter["Value"]
    assert len(value.encode()) <= SSM_STANDARD_LIMIT and value.startswith("#!/bin/sh\n")
    payload = re.search(r"printf '%s' '([A-Za-z0-9+/=]+)'", value)[1]
    unpacked_lines = gzip.decompress(base64.b64decode(payload)).decode().splitlines()
    plain_lines = local.read_text().splitlines()
    dropped = [line for line in plain_lines if line not in unpacked_lines]
    assert [line for line in plain_lines if line in unpacked_lines] == unpacked_lines
    assert dropped and all(line.startswith("# ") for line in dropped)  # comments only
    fetched = tmp_path / "fetched.sh"
    fetched.write_text(value)
    checked = subprocess.run(["shellcheck", "-s", "sh", str(fetched)], capture_output=True)
    assert checked.returncode == 0, checked.stdout
    shims = Shims(tmp_path)
    plain = shims.run("sh", local, env={"AWS_REGION": "us-east-1"})
    plain_calls = shims.calls()
    unpacked = shims.run("sh", fetched, env={"AWS_REGION": "us-east-1"})
    assert plain.returncode == unpacked.returncode == 0, unpacked.stderr
    assert sorted(shims.calls()) == sorted(plain_calls)  # the same include, word for word


def test_an_unreadable_target_writes_no_include_and_exits_1(mirrored, mirror, ecr, tmp_path):
    out = tmp_path / "pull.sh"
    out.write_text("the last good include\n")
    ecr.data_plane.stop()  # the target cannot be read: an include now would pull nothing
    impatient = tmp_path / "impatient.yaml"  # given up on after 1 s, not 10
    impatient.write_text(
        mirrored.read_text().replace("images:", "timeouts: {unreachable: 1s}\nimages:", 1)
    )

    run = mirror("buildspec", "--format", "script", "--output", str(out), config=impatient)

    assert run.code == 1
    assert "no include was written" in run.err and ecr.host in run.err
    assert out.read_text() == "the last good include\n"


FOUR_SPACES = """\
version: 0.2
phases:
    install:
        commands:
        - echo install    # unindented sequences, four-space mappings
    pre_build:
        commands:
        - echo existing
"""


def test_a_merge_keeps_the_files_own_indentation_and_changes_no_other_line(
    mirrored, mirror, tmp_path
):
    buildspec = tmp_path / "buildspec.yml"
    buildspec.write_text(FOUR_SPACES)

    assert mirror("buildspec", "--merge", str(buildspec), config=mirrored).code == 0

    merged = buildspec.read_text().splitlines()
    first = next(i for i, line in enumerate(merged) if "pulling mirrored base images" in line)
    last = next(i for i, line in enumerate(merged) if "base images ready" in line)
    assert merged[:first] + merged[last + 1 :] == FOUR_SPACES.splitlines()  # no other line moved
    assert all(line.startswith("        - ") for line in merged[first : last + 1])  # its style


@pytest.mark.parametrize(("version", "code"), [("version: 0.1\n", 2), ("", 0)])
def test_a_merge_refuses_version_0_1_and_warns_without_a_version(
    mirrored, mirror, tmp_path, version, code
):
    buildspec = tmp_path / "buildspec.yml"
    text = version + "phases:\n  build:\n    commands:\n      - make\n"
    buildspec.write_text(text)

    run = mirror("buildspec", "--merge", str(buildspec), config=mirrored)

    assert run.code == code
    if code == 2:
        assert "version 0.1" in run.err and "own shell" in run.err
        assert buildspec.read_text() == text  # nothing written
    else:
        assert "has no version" in run.err


def test_the_script_pulls_only_what_its_dockerfile_or_image_arguments_name(
    mirrored, mirror, ecr, tmp_path
):
    script = tmp_path / "pull.sh"
    assert (
        mirror("buildspec", "--format", "script", "--output", str(script), config=mirrored).code
        == 0
    )
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG EXPORTER=v1.8.2\nFROM nginx:1.16 AS web\n"
        "COPY --from=quay.io/prometheus/node-exporter:${EXPORTER} /bin/node_exporter /x\n"
        "FROM web\nFROM redis:7\n"
    )
    shims = Shims(tmp_path)

    def pulled(*args: str) -> tuple[list[str], str]:
        done = shims.run("sh", script, *args)
        assert done.returncode == 0, done.stderr
        tags = sorted(
            c[3]
            for c in shims.calls()
            if c[:2] == ["docker", "tag"] and len(c) == 4 and "@" not in c[3]
        )
        return tags, done.stderr

    by_file, err = pulled(str(dockerfile))
    assert by_file == [
        "docker.io/library/nginx:1.16", "nginx:1.16", "quay.io/prometheus/node-exporter:v1.8.2"
    ]  # fmt: skip
    assert "redis:7 is not mirrored: the build pulls it upstream" in err
    strict = shims.run("sh", script, str(dockerfile), env={"MIRROR_STRICT": "1"})
    assert strict.returncode == 1  # a base nobody mirrored fails the build, saying what to add
    assert (
        "redis:7 is not mirrored (MIRROR_STRICT=1): add '- redis:7' to images: in "
        f"{Path(mirrored).name}, then mirror sync" in strict.stderr
    )
    by_name, _ = pulled("docker.io/library/python:3.12")
    assert by_name == ["docker.io/library/python:3.12", "python:3.12"]
    everything, _ = pulled()
    assert everything == [
        "docker.io/library/nginx:1.16", "docker.io/library/python:3.12", "nginx:1.16",
        "python:3.12", "quay.io/prometheus/node-exporter:v1.8.2",
    ]  # fmt: skip
