"""Change events: a moved tag produces exactly one event per destination (moto's
EventBridge and SNS, each read back through SQS, and a local webhook that checks the
HMAC); an unchanged pass produces none; a failing receiver does not fail the sync."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest

from tests.support import serving, skopeo
from tests.support.images import Image, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-webhook-key"
TARGET = "mirror/docker-hub/library/nginx"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records deliveries, or answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.status == 200:
                    receiver.deliveries.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        serving.start(self.server)

    def stop(self) -> None:
        serving.stop(self.server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mirror"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def broken() -> Iterator[Receiver]:
    """A receiver that answers every delivery with 503."""
    running = Receiver(status=503)
    yield running
    running.stop()


@pytest.fixture
def queues(aws: str) -> dict[str, str]:
    """An event bus and a topic, each forwarding to an SQS queue the test reads."""
    sqs, events, sns = boto3.client("sqs"), boto3.client("events"), boto3.client("sns")
    urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("bus", "topic")}
    arns = {
        name: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for name, url in urls.items()
    }
    events.create_event_bus(Name="mirror-events")
    events.put_rule(
        Name="moved", EventBusName="mirror-events", EventPattern=json.dumps({"source": ["mirror"]})
    )
    events.put_targets(
        Rule="moved", EventBusName="mirror-events", Targets=[{"Id": "q", "Arn": arns["bus"]}]
    )
    topic = sns.create_topic(Name="mirror-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arns["topic"])
    return {**urls, "topic_arn": topic}


def drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


def events_config(write_config, target, hub, queues, webhook_url: str, attempts: int = 5):
    return write_config(
        target,
        "- nginx:1.16",
        docker_io=hub.url,
        extra=(
            "events:\n"
            "  - eventbridge: {bus: mirror-events}\n"
            f"  - sns: {{topic_arn: '{queues['topic_arn']}'}}\n"
            f"  - webhook: {{url: '{webhook_url}', secret_env: MIRROR_WEBHOOK_SECRET}}\n"
            f"    attempts: {attempts}\n"
        ),
    )


def test_a_moved_tag_is_announced_once_to_every_destination_and_an_unchanged_pass_is_quiet(
    hub, target, seeder, write_config, mirror, queues, receiver, monkeypatch
):
    monkeypatch.setenv("MIRROR_WEBHOOK_SECRET", SECRET)
    old = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = events_config(write_config, target, hub, queues, receiver.url)
    assert mirror("sync", config=config).code == 0  # a first copy is not a move
    assert receiver.deliveries == [] and drain(queues["bus"]) == []

    new = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    moved = mirror("sync", config=config)

    assert moved.code == 0, moved.err
    assert moved.report["summary"]["events_sent"] == 3
    ((headers, body),) = receiver.deliveries
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Mirror-Signature-256"], expected)
    event = json.loads(body)
    assert (event["old_digest"], event["new_digest"], event["tag"]) == (old, new, "1.16")
    assert event["image"] == "docker.io/library/nginx:1.16"
    assert event["target"] == f"{target.host}/{TARGET}:1.16"
    assert headers["X-Mirror-Delivery"] == event["id"]
    (on_bus,) = drain(queues["bus"])
    assert on_bus["detail-type"] == "Mirrored tag moved" and on_bus["detail"] == event
    (on_topic,) = drain(queues["topic"])
    assert json.loads(on_topic["Message"]) == event
    assert SECRET not in moved.out + moved.err

    quiet = mirror("sync", config=config)

    assert quiet.report["summary"]["events_sent"] == 0
    assert len(receiver.deliveries) == 1 and drain(queues["bus"]) == []
    assert drain(queues["topic"]) == []


def test_a_failing_receiver_is_retried_and_never_fails_the_sync(
    hub, target, seeder, write_config, mirror, queues, broken, monkeypatch
):
    monkeypatch.setenv("MIRROR_WEBHOOK_SECRET", SECRET)
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = events_config(write_config, target, hub, queues, broken.url, attempts=2)
    assert mirror("sync", config=config).code == 0
    new = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))

    run = mirror("sync", config=config)

    assert run.code == 0
    assert skopeo.raw_digest(target.host, f"{TARGET}:1.16") == new
    assert run.report["summary"]["events_sent"] == 2  # EventBridge and SNS still got it
    assert run.report["summary"]["events_failed"] == 1
    assert broken.attempts == 2
    assert len(drain(queues["bus"])) == 1


def test_a_missing_webhook_secret_is_a_config_error_before_anything_moves(
    hub, target, seeder, write_config, mirror, queues, monkeypatch
):
    monkeypatch.delenv("MIRROR_WEBHOOK_SECRET", raising=False)
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    config = events_config(write_config, target, hub, queues, "http://127.0.0.1:9/")

    run = mirror("sync", config=config)

    assert run.code == 2
    assert "MIRROR_WEBHOOK_SECRET is not set" in run.err
    assert httpx.head(f"{target.url}/v2/{TARGET}/manifests/1.16").status_code == 404
