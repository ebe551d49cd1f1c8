"""Copy on miss, end to end: moto's SQS and DynamoDB, a `mirror daemon`, the generated
include run with `docker` done by podman, and a real `podman build`.

A Dockerfile names an image the config does not list; the include reports it to the
queue, the daemon copies it, the include waits for it, pulls it from the mirror and tags
it, and the build succeeds with the upstream stopped. A disallowed image is refused, and
the include says why. Forged reports change nothing and cost no pull.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from mirror.coordination.ondemand import OnDemandImages
from mirror.coordination.table import Table
from tests.support import skopeo
from tests.support.daemon import wait_for
from tests.support.fake_ecr import REGION
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e

TABLE = "mirror-state"
BUILD_ARN = (
    "arn:aws:codebuild:us-east-1:111122223333:build/app-ci:0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"
)

AWS = """#!{python}
# `aws sqs send-message`, done by boto3 against moto; every call is recorded.
import json, os, sys
import boto3
args = sys.argv[1:]
with open(os.environ["AWS_SHIM_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
assert args[:2] == ["sqs", "send-message"], args
options = dict(zip(args[2::2], args[3::2]))
boto3.client("sqs", region_name=options.get("--region")).send_message(
    QueueUrl=options["--queue-url"], MessageBody=options["--message-body"]
)
"""


@pytest.fixture
def queue(aws) -> str:
    return boto3.client("sqs").create_queue(QueueName="mirror-misses")["QueueUrl"]


def on_demand_config(write_config, target, upstream, queue, port, extra=""):
    """`upstream`: a registry, or the Docker-Hub-like front (anything with a url)."""
    return write_config(
        target, "- nginx:1.16", docker_io=upstream.url,
        extra=(
            f"coordination: {{dynamodb_table: {TABLE}}}\n"
            f"on_demand:\n  queue_url: {queue}\n  allow: ['docker.io/library/redis']\n{extra}"
            f"daemon:\n  every: 1h\n  health_address: 127.0.0.1\n  health_port: {port}\n"
        ),
    )  # fmt: skip


def shims(tmp_path: Path, podman) -> dict[str, str]:
    """The build's environment: docker and aws stand-ins first on PATH, moto's AWS."""
    shim = podman.docker_shim(tmp_path / "shim").parent
    (shim / "aws").write_text(AWS.format(python=sys.executable))
    (shim / "aws").chmod(0o755)
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    return {
        **aws,
        "PATH": f"{shim}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "AWS_SHIM_LOG": str(tmp_path / "aws.log"),
        "CODEBUILD_BUILD_ARN": BUILD_ARN,
    }


def include(mirror, config: Path, tmp_path: Path) -> Path:
    script = tmp_path / "pull.sh"
    made = mirror("buildspec", "--format", "script", "--output", str(script), config=config)
    assert made.code == 0, made.err
    return script


def daemon_and_include(write_config, target, upstream, queue, daemon_for, mirror, tmp_path):
    """A daemon with `on_demand` past its first pass, and the include it makes."""
    port = free_port()
    config = on_demand_config(write_config, target, upstream, queue, port)
    daemon = daemon_for(config, port)
    wait_for(lambda: daemon.health()["passes"] >= 1, timeout=30)
    return config, daemon, include(mirror, config, tmp_path)


def test_a_miss_is_reported_copied_and_pulled_from_the_mirror_and_the_build_succeeds(
    podman, upstream, target, queue, write_config, daemon_for, mirror, tmp_path, capsys
):
    podman.push_base(tmp_path / "base", f"{upstream.host}/library/nginx:1.16")
    podman("push", "--tls-verify=false", "localhost/seed",
           f"docker://{upstream.host}/library/redis:7.4")  # fmt: skip
    config, daemon, script = daemon_and_include(
        write_config, target, upstream, queue, daemon_for, mirror, tmp_path
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM redis:7.4\nRUN echo built > /built\n")
    env = shims(tmp_path, podman)
    podman("rmi", "--all", "--force")  # the build's store starts empty, as CodeBuild's does

    missed_at = time.monotonic()
    ran = subprocess.run(
        ["sh", str(script), str(app / "Dockerfile")],
        env={**env, "MIRROR_ON_MISS": "wait:90"}, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    took = time.monotonic() - missed_at
    assert ran.returncode == 0, ran.stderr
    with capsys.disabled():  # the figure docs/operations.md gives (pytest -s)
        print(f"\nmiss to pull: {took:.1f}s")
    assert "redis:7.4 is not mirrored: reported to the mirror" in ran.stderr
    assert "redis:7.4 copied on demand" in ran.stderr
    assert took < 90
    (sent,) = [json.loads(line) for line in (tmp_path / "aws.log").read_text().splitlines()]
    body = json.loads(sent[sent.index("--message-body") + 1])
    assert body["image"] == "redis:7.4"
    assert (body["project"], body["account"]) == ("app-ci", "111122223333")
    mirrored = skopeo.raw_digest(target.host, "mirror/docker-hub/library/redis:7.4")
    assert mirrored == skopeo.raw_digest(upstream.host, "library/redis:7.4")  # faithful

    upstream.stop()  # from here on only the mirror has it
    podman("build", "--isolation", "chroot", "--pull=never", "-t", "localhost/app", str(app))
    pulled = json.loads(podman("image", "inspect", "redis:7.4").stdout)[0]
    assert pulled["Digest"] == mirrored

    added = OnDemandImages(Table(boto3.client("dynamodb", region_name=REGION), TABLE)).images()
    assert [(a.image, a.project) for a in added] == [("docker.io/library/redis:7.4", "app-ci")]
    listed = mirror("validate", config=config)
    assert "  - docker.io/library/redis:7.4  # app-ci" in listed.out
    status = mirror("status", config=config)
    assert "on demand (1): images builds asked for" in status.out
    assert "docker.io/library/redis:7.4" in status.out and "first by app-ci" in status.out
    time.sleep(2)  # the daemon's next pass keeps it fresh like a configured image
    assert any(
        e.get("event") == "image_done" and e.get("source") == "docker.io/library/redis:7.4"
        for e in daemon.events()
    )


def test_a_refused_image_is_said_why_and_the_build_follows_mirror_on_miss(
    podman, upstream, target, queue, write_config, daemon_for, mirror, tmp_path
):
    seeder = Seeder(upstream.url)
    seeder.push("library/nginx", "1.16", Image([random_blob(512)]))
    seeder.push("library/memcached", "1.6", Image([random_blob(512)]))
    seeder.close()
    _, daemon, script = daemon_and_include(
        write_config, target, upstream, queue, daemon_for, mirror, tmp_path
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM memcached:1.6\n")
    env = shims(tmp_path, podman)

    started = time.monotonic()
    strict = subprocess.run(
        ["sh", str(script), str(app / "Dockerfile")],
        env={**env, "MIRROR_ON_MISS": "wait:60", "MIRROR_STRICT": "1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert strict.returncode == 1
    assert "memcached:1.6: refused by the mirror: the image is not in on_demand.allow" in (
        strict.stderr
    )
    assert time.monotonic() - started < 60  # the refusal ended the wait
    lenient = subprocess.run(
        ["sh", str(script), str(app / "Dockerfile")],
        env={**env, "MIRROR_ON_MISS": "wait:60"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert lenient.returncode == 0, lenient.stderr
    assert "refused by the mirror" in lenient.stderr
    assert "the build pulls it upstream" in lenient.stderr
    failing = subprocess.run(
        ["sh", str(script), str(app / "Dockerfile")],
        env={**env, "MIRROR_ON_MISS": "fail"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failing.returncode == 1
    assert "memcached:1.6 is not mirrored (MIRROR_ON_MISS=fail)" in failing.stderr
    assert "memcached" not in "".join(target.catalog())  # nothing of it copied
    assert any(e.get("event") == "on_demand_refused" for e in daemon.events())


def test_on_demand_without_a_queue_is_said_and_the_configured_images_still_copy(
    upstream, target, aws, write_config, daemon_for, tmp_path
):
    seeder = Seeder(upstream.url)
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(512)]))
    seeder.close()
    port = free_port()
    config = write_config(
        target, "- nginx:1.16", docker_io=upstream.url,
        extra=(
            f"coordination: {{dynamodb_table: {TABLE}}}\n"
            "on_demand: {allow: ['docker.io/library/*']}\n"  # no queue_url, none deployed
            f"daemon:\n  every: 1h\n  health_address: 127.0.0.1\n  health_port: {port}\n"
            f"  publish_buildspec: {{output: {tmp_path / 'pull.sh'}, format: script}}\n"
        ),
    )  # fmt: skip

    daemon = daemon_for(config, port)

    wait_for(lambda: daemon.health()["passes"] >= 1, timeout=30)
    assert daemon.health()["status"] == "ok"
    assert skopeo.raw_digest(target.host, "mirror/docker-hub/library/nginx:1.16") == digest
    (said,) = [e for e in daemon.events() if e.get("event") == "on_demand_without_queue"]
    assert "MIRROR_ON_DEMAND_QUEUE_URL" in said["hint"]
    # the include it cannot write whole is not written, and the pass still counts as done
    (unpublished,) = [e for e in daemon.events() if e.get("event") == "buildspec_not_published"]
    assert "on_demand names no queue" in unpublished["error"]
    assert not (tmp_path / "pull.sh").exists()
    assert daemon.health()["last_pass_failed"] is False


def test_a_thousand_forged_reports_change_nothing_and_cost_no_pull(
    hub, target, queue, write_config, daemon_for, seeder, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(512)]))
    seeder.push("library/redis", "7.4", Image([random_blob(512)]))
    port = free_port()
    config = on_demand_config(
        write_config, target, hub, queue, port, extra="  max_new_per_day: 1\n"
    )
    daemon = daemon_for(config, port)
    wait_for(lambda: daemon.health()["passes"] >= 1, timeout=30)
    sqs = boto3.client("sqs")
    # the day's one new image, asked for properly: the cap is spent
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"version": 1, "image": "redis:7.4"}))
    wait_for(lambda: "mirror/docker-hub/library/redis" in target.catalog(), timeout=60)
    time.sleep(1)
    before = target.catalog()
    hub.reset_counters()

    forged = [
        "not json",
        "{}",
        json.dumps({"version": 1, "image": "redis:7.4", "admin": True}),  # unknown field
        json.dumps({"version": 2, "image": "redis:7.4"}),
        json.dumps({"version": 1, "image": "$(curl evil.example)"}),
        json.dumps({"version": 1, "image": "redis:7.4; rm -rf /"}),
        json.dumps({"version": 1, "image": "REDIS:7"}),
        json.dumps({"version": 1, "image": "x" * 5000}),
        json.dumps({"version": 1, "image": "redis:7.4", "project": "a b"}),
        json.dumps({"version": 1, "image": "redis:7.4", "account": "not-an-account"}),
    ]
    other_registries = [f"quay.io/evil/x{i}:1" for i in range(300)]
    over_the_cap = [f"docker.io/library/redis:{i}.0" for i in range(300)]  # allowed, but
    not_allowed = [f"evil{i}:latest" for i in range(1000 - len(forged) - 600)]
    forged += [
        json.dumps({"version": 1, "image": image})
        for image in other_registries + over_the_cap + not_allowed
    ]
    assert len(forged) == 1000

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(v == "0" for v in attributes.values())

    # In waves of 100: moto's receive scans the whole queue with a clock call per
    # message, so a 1,000-deep queue costs it half a second a receive (SQS does not).
    for wave in range(0, len(forged), 100):
        for start in range(wave, wave + 100, 10):
            sqs.send_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "MessageBody": body}
                    for i, body in enumerate(forged[start : start + 10])
                ],
            )
        wait_for(drained, timeout=60)
    time.sleep(1)
    after = target.catalog()
    refusals = after.pop("mirror/on-demand/refused", {})
    before.pop("mirror/on-demand/refused", None)
    assert after == before  # no image added, none changed
    assert len(refusals) <= 100  # refusals written are capped a day
    added = OnDemandImages(Table(boto3.client("dynamodb", region_name=REGION), TABLE)).images()
    assert [a.image for a in added] == ["docker.io/library/redis:7.4"]
    assert hub.counters.requests == []  # not a pull, not even a HEAD
    assert daemon.health()["status"] == "ok"
    dropped = [e for e in daemon.events() if e.get("event") == "on_demand_reports_dropped"]
    assert dropped and "evil.example" not in json.dumps(daemon.events())
