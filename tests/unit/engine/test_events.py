"""Change events: the signature a receiver checks, the id it dedupes on, and an event
still retrying when the pass ends is counted and logged, never lost silently."""

import hashlib
import hmac
import json

import structlog

from mirror.config.model import EventSink, WebhookSink
from mirror.engine.events import EventPublisher, TagMoved, sign
from mirror.engine.report import Action, ImageResult
from tests.support.registry import free_port


def moved() -> TagMoved:
    result = ImageResult(
        "docker.io/library/nginx:1.16",
        "127.0.0.1:5000/mirror/docker-hub/library/nginx:1.16",
        Action.COPIED,
        target_digest="sha256:" + "b" * 64,
        previous_digest="sha256:" + "a" * 64,
    )
    event = TagMoved.from_result(result)
    assert event is not None
    return event


def test_the_signature_is_hmac_sha256_of_the_exact_body():
    body = moved().body()

    expected = "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert sign(b"key", body) == expected
    assert json.loads(body)["type"] == "mirror.tag.moved"


def test_every_retry_of_one_move_carries_the_same_id():
    first, again = moved(), moved()

    assert first.id == again.id and len(first.id) == 32
    assert first.tag == "1.16"


def test_a_first_copy_is_not_a_move():
    result = ImageResult("a", "r/a:1", Action.COPIED, target_digest="sha256:" + "b" * 64)

    assert TagMoved.from_result(result) is None


def test_an_event_still_retrying_when_the_pass_ends_is_counted_and_logged():
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    publisher = EventPublisher(
        [EventSink(webhook=WebhookSink(url=nobody), attempts=20)], initial_wait=5.0
    )
    with structlog.testing.capture_logs() as logs:
        publisher.publish(moved())
        publisher.close(timeout=0.3)

    assert (publisher.sent, publisher.failed) == (0, 1)
    (undelivered,) = [entry for entry in logs if entry["event"] == "event_undelivered"]
    assert undelivered["change"]["new_digest"] == "sha256:" + "b" * 64


def test_a_closed_publisher_stops_retrying_instead_of_outliving_the_pass():
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    publisher = EventPublisher(
        [EventSink(webhook=WebhookSink(url=nobody), attempts=20)], initial_wait=5.0
    )
    publisher.publish(moved())
    publisher.close(timeout=0.3)

    assert not publisher._thread.is_alive()  # no request to anyone after the pass
