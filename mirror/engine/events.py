"""Change events: when a mirrored tag moves to a new digest, tell EventBridge, SNS or a
webhook, so teams can rebuild what is built on that base.

Delivery is at least once: each destination is retried with backoff on a background
thread, so a slow or broken receiver never holds up copying and never fails a pass. The
end of a pass waits a bounded time for deliveries; an event that still could not be
delivered is logged in full (so it can be replayed) and counted in the report.
Receivers dedupe on the event id, which is the same for every retry.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import os
import queue
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import structlog
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from mirror.config.model import EventSink
from mirror.engine.report import ImageResult
from mirror.errors import ConfigError, safe_url
from mirror.oci.reference import parse_reference
from mirror.secrets import remember

__all__ = ["EventPublisher", "TagMoved", "sign"]

log = structlog.get_logger(__name__)
EVENT_TYPE = "mirror.tag.moved"
DETAIL_TYPE = "Mirrored tag moved"
SIGNATURE_HEADER = "X-Mirror-Signature-256"
FLUSH_SECONDS = 30.0
STOP_SECONDS = 2.0  # after the flush: for a request under way to end


@dataclass(frozen=True)
class TagMoved:
    image: str  # the upstream reference, as mirrored
    target: str  # where it lands
    tag: str
    old_digest: str
    new_digest: str
    upstream_digest: str | None
    time: str

    @property
    def id(self) -> str:
        key = f"{self.target}|{self.old_digest}|{self.new_digest}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": EVENT_TYPE, **asdict(self)}

    def body(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_result(cls, result: ImageResult) -> TagMoved | None:
        if not (result.previous_digest and result.target_digest):
            return None
        return cls(
            image=result.source,
            target=result.target,
            tag=parse_reference(result.target).tag or "",
            old_digest=result.previous_digest,
            new_digest=result.target_digest,
            upstream_digest=result.upstream_digest,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def sign(key: bytes, body: bytes) -> str:
    """The X-Mirror-Signature-256 value: HMAC-SHA256 of the exact body, as GitHub does."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class Transient(Exception):
    """Worth another try."""


class _Sender(Protocol):
    name: str

    def send(self, event: TagMoved) -> None: ...

    def close(self) -> None: ...


class _Webhook:
    def __init__(self, url: str, secret_env: str | None) -> None:
        self.name = f"webhook {safe_url(url)}"  # no user:password@, no query
        remember(httpx.URL(url).password or None)
        self._url = url
        self._key: bytes | None = None
        if secret_env is not None:
            secret = os.environ.get(secret_env)
            if not secret:
                raise ConfigError(
                    f"events: webhook secret_env {secret_env} is not set",
                    hint="export it, or remove secret_env to send unsigned events",
                )
            remember(secret)
            self._key = secret.encode()
        self._client = httpx.Client(timeout=10.0)

    def send(self, event: TagMoved) -> None:
        body = event.body()
        headers = {
            "Content-Type": "application/json",
            "X-Mirror-Event": EVENT_TYPE,
            "X-Mirror-Delivery": event.id,
        }
        if self._key is not None:
            headers[SIGNATURE_HEADER] = sign(self._key, body)
        try:
            answer = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Transient(f"{type(exc).__name__}") from None
        if answer.status_code == 429 or answer.status_code >= 500:
            raise Transient(f"HTTP {answer.status_code}")
        if answer.status_code >= 300:
            raise RuntimeError(f"the receiver refused it: HTTP {answer.status_code}")

    def close(self) -> None:
        self._client.close()


class _EventBridge:
    def __init__(self, bus: str, source: str) -> None:
        import boto3

        self.name = f"eventbridge {bus}"
        self._bus, self._source = bus, source
        self._client = boto3.client("events")

    def send(self, event: TagMoved) -> None:
        entry = {
            "Source": self._source,
            "DetailType": DETAIL_TYPE,
            "Detail": event.body().decode(),
            "EventBusName": self._bus,
            "Resources": [],
        }
        try:
            answer = self._client.put_events(Entries=[entry])
        except Exception as exc:  # botocore's errors: throttling, network
            raise Transient(type(exc).__name__) from None
        if answer.get("FailedEntryCount"):
            failed = answer["Entries"][0]
            raise Transient(f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")

    def close(self) -> None:
        self._client.close()


class _Sns:
    def __init__(self, topic_arn: str) -> None:
        import boto3

        self.name = f"sns {topic_arn}"
        self._topic = topic_arn
        self._client = boto3.client("sns", region_name=topic_arn.split(":")[3])

    def send(self, event: TagMoved) -> None:
        try:
            self._client.publish(
                TopicArn=self._topic,
                Message=event.body().decode(),
                Subject=f"mirror: {event.tag} moved",
                MessageAttributes={
                    "type": {"DataType": "String", "StringValue": EVENT_TYPE},
                    "target": {"DataType": "String", "StringValue": event.target},
                },
            )
        except Exception as exc:
            raise Transient(type(exc).__name__) from None

    def close(self) -> None:
        self._client.close()


def _sender(sink: EventSink) -> _Sender:
    if sink.webhook is not None:
        return _Webhook(sink.webhook.url, sink.webhook.secret_env)
    if sink.eventbridge is not None:
        return _EventBridge(sink.eventbridge.bus, sink.eventbridge.source)
    assert sink.sns is not None
    return _Sns(sink.sns.topic_arn)


class EventPublisher:
    """Queues events and delivers them to every sink on one background thread."""

    def __init__(self, sinks: list[EventSink], *, initial_wait: float = 0.5) -> None:
        self._senders = [(_sender(s), s.attempts) for s in sinks]  # ConfigError before work
        self._initial_wait = initial_wait
        self._queue: queue.Queue[TagMoved | None] = queue.Queue()
        self._undelivered: dict[tuple[str, str], TagMoved] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()  # the pass is over: stop retrying
        self.sent = 0
        self.failed = 0
        # In the pass's context: an undelivered event is logged with its run_id.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._work,), name="events", daemon=True
        )
        self._thread.start()

    def publish(self, event: TagMoved) -> None:
        with self._lock:
            for sender, _ in self._senders:
                self._undelivered[(event.id, sender.name)] = event
        self._queue.put(event)

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            for sender, attempts in self._senders:
                if not self._closed.is_set():  # else close() has logged it undelivered
                    self._deliver(sender, attempts, event)

    def _deliver(self, sender: _Sender, attempts: int, event: TagMoved) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(attempts) | stop_when_event_set(self._closed),
            wait=wait_random_exponential(multiplier=self._initial_wait, max=10.0),
            retry=retry_if_exception_type(Transient),
            sleep=self._pause,
            reraise=True,
        )
        try:
            retrying(sender.send, event)
        except Exception as exc:
            with self._lock:
                if self._undelivered.pop((event.id, sender.name), None) is None:
                    return  # the pass ended first and logged it
                self.failed += 1
            log.error("event_undelivered", sink=sender.name, error=str(exc), change=event.to_json())
            return
        with self._lock:
            if self._undelivered.pop((event.id, sender.name), None) is not None:
                self.sent += 1
        log.info("event_sent", sink=sender.name, id=event.id, target=event.target)

    def _pause(self, seconds: float) -> None:
        """The wait between attempts, which ends when the pass does."""
        self._closed.wait(seconds)

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Wait up to `timeout` for deliveries in progress; what is left is logged, and
        the thread stops retrying (it would outlive the pass, into the next one)."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._closed.set()
        self._thread.join(STOP_SECONDS)
        if not self._thread.is_alive():  # else a request is still under way
            for sender, _ in self._senders:
                sender.close()
        with self._lock:
            left = list(self._undelivered.items())
            self.failed += len(left)
            self._undelivered.clear()
        for (_, sink), event in left:
            log.error(
                "event_undelivered",
                sink=sink,
                error="still retrying when the pass ended",
                change=event.to_json(),
            )
