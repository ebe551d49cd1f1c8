"""The daemon's listener on the copy-on-miss queue (moto's SQS and DynamoDB): each report
judged, added or refused, deleted once handled, and kept when the table is away."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import boto3
import pytest
import structlog

from mirror.config import Config, load_config
from mirror.coordination.ondemand import OnDemandImages
from mirror.coordination.table import Table, open_table
from mirror.engine.ondemand import NOT_ALLOWED, MissRequest
from mirror.service.misses import MissListener
from tests.support.fake_ecr import REGION

SECRET = "dckr_pat_0123456789abcdef"


def report(image: str, **extra: object) -> str:
    return json.dumps({"version": 1, "image": image, "project": "app-ci", **extra})


@pytest.fixture
def queue(aws: str) -> str:
    sqs = boto3.client("sqs", region_name=REGION)
    return sqs.create_queue(QueueName="misses", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]


@pytest.fixture
def config(queue: str, tmp_path: Path) -> Config:
    path = tmp_path / "mirror.yaml"
    path.write_text(
        "version: 1\n"
        "target: {kind: registry, registry_url: 'http://127.0.0.1:9'}\n"
        f"on_demand: {{queue_url: '{queue}', allow: [docker.io/library/*]}}\n"
        "images: [nginx:1.16]\n"
    )
    return load_config(path)


class Listened:
    def __init__(self, queue: str, config: Config, table: Table) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue = queue
        self.store = OnDemandImages(table)
        self.passes_asked = 0
        self.refused: list[tuple[str, str]] = []
        self.listener = MissListener(
            self.sqs, queue, self.store, lambda: config, self._asked, self._refuse,
            threading.Event(),
        )  # fmt: skip

    def _asked(self) -> None:
        self.passes_asked += 1

    def _refuse(self, request: MissRequest, reason: str) -> None:
        self.refused.append((request.written, reason))

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=body)

    def left(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


def test_each_report_is_judged_and_every_handled_one_is_deleted(queue, config):
    listened = Listened(queue, config, open_table("mirror-state", REGION))
    listened.send(
        report("redis:7.4"),
        report("bitnami/redis:7.4"),  # not in on_demand.allow
        report("nginx:1.16"),  # in the config: only the next pass, now
        report("redis:7.4"),  # asked again: counted, not added again
        f'{{"version": 1, "image": "redis:7.4", "token": "{SECRET}"}}',  # not a report
        "x" * 5000,
    )
    with structlog.testing.capture_logs() as logs:
        while listened.listener.poll_once(wait_seconds=0):
            pass

    assert listened.listener.outcomes == {
        "added": 1, "refused": 1, "configured": 1, "known": 1, "invalid": 2,
    }  # fmt: skip
    assert [a.image for a in listened.store.images()] == ["docker.io/library/redis:7.4"]
    assert listened.store.images()[0].requests == 2
    assert listened.refused == [("bitnami/redis:7.4", NOT_ALLOWED)]
    assert listened.passes_asked == 3  # added, configured, known: each asks for a pass
    assert listened.left() == 0
    # a dropped report is counted and said once, nothing of its body repeated
    dropped = [e for e in logs if e["event"] == "on_demand_reports_dropped"]
    assert len(dropped) == 1
    assert SECRET not in repr(logs) and "xxxx" not in repr(logs)


def test_a_report_that_cannot_be_recorded_stays_in_the_queue_for_later(queue, config, aws):
    absent = Table(boto3.client("dynamodb", region_name=REGION), "no-such-table")
    listened = Listened(queue, config, absent)
    listened.send(report("redis:7.4"))

    with structlog.testing.capture_logs() as logs:
        assert listened.listener.poll_once(wait_seconds=0) == 1

    assert listened.listener.outcomes == {"unavailable": 1}
    assert any(e["event"] == "on_demand_unavailable" for e in logs)
    assert listened.left() == 1  # back after the visibility timeout; after five, the DLQ
    assert listened.passes_asked == 0
