"""The daemon's side of copy on miss: long-poll the queue builds report misses to, judge
each report by the `on_demand` policy, add what it allows (the next pass, asked for at
once, copies it, and every pass after keeps it fresh), and tell the include why for what
it does not.

Reports are untrusted (mirror/engine/ondemand.py reads them). One that is not a report
is dropped and counted, nothing of it logged; one the policy refuses costs at most one
refusal manifest in the target a day per image (REFUSALS_PER_DAY in all); none costs a
pull. A report is deleted once handled; one that could not be (the table unreachable)
comes back after the queue's visibility timeout, and after the queue's maxReceiveCount
goes to its dead-letter queue.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from mirror.config import Config, image_key, listed_images
from mirror.config.model import OnDemandSettings
from mirror.coordination.ondemand import OnDemandImages, Outcome
from mirror.engine.ondemand import (
    DAY_CAP,
    SENDER_CAP,
    InvalidRequestError,
    MissRequest,
    judge,
    parse_request,
)
from mirror.errors import MirrorError

__all__ = ["MissListener"]

log = structlog.get_logger(__name__)
WAIT_SECONDS = 20  # SQS long polling, its longest
BATCH = 10  # messages a receive returns, at most
BACKOFF_SECONDS = 10.0  # after the queue or the table failed
INVALID_LOG_SECONDS = 60.0  # dropped reports are counted, and said at most this often

Refuse = Callable[[MissRequest, str], None]  # request, reason: tell the include


class MissListener:
    """Run `run()` on a thread of its own until `stop` is set."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        store: OnDemandImages,
        config: Callable[[], Config],
        on_added: Callable[[], None],
        refuse: Refuse,
        stop: threading.Event,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._store = store
        self._config = config
        self._on_added = on_added
        self._refuse = refuse
        self._stop = stop
        self.outcomes: Counter[str] = Counter()  # what became of each report
        self._invalid_said_at = 0.0

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except MirrorError as exc:
                log.warning("on_demand_unavailable", error=exc.message, hint=exc.hint)
                self._stop.wait(BACKOFF_SECONDS)
            except Exception as exc:  # botocore's own errors: the queue is away for now
                log.warning("on_demand_unavailable", error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(BACKOFF_SECONDS)

    def poll_once(self, wait_seconds: int = WAIT_SECONDS) -> int:
        """One receive and what it brought handled; how many messages it brought."""
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["SenderId"],
        )
        messages = answer.get("Messages", [])
        config = self._config()  # one config for the batch
        listed = listed_images(config)
        handled = [m for m in messages if self._handle(m, config.model.on_demand, listed)]
        if handled:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(handled)
                ],
            )
        return len(messages)

    def _handle(
        self,
        message: dict[str, Any],
        settings: OnDemandSettings | None,
        listed: frozenset[tuple[str, str]],
    ) -> bool:
        """Whether the message is done with (deleted): every outcome but a table that
        cannot be reached."""
        if settings is None:  # the config no longer asks for it: left for a later one
            return False
        sender = (message.get("Attributes") or {}).get("SenderId")
        try:
            request = parse_request(message.get("Body"), sender)
        except InvalidRequestError as exc:
            self._invalid(exc.message)
            return True
        outcome = self._decide(settings, request, listed)
        self.outcomes[outcome] += 1
        return outcome != "unavailable"

    def _decide(
        self, settings: OnDemandSettings, request: MissRequest, listed: frozenset[tuple[str, str]]
    ) -> str:
        if image_key(request.image) in listed:
            self._on_added()  # in the config, not copied yet: the next pass, now
            return "configured"
        verdict = judge(settings, request.image)
        if not verdict.allowed:
            return self._refused(request, verdict.reason)
        try:
            added = self._store.add(
                str(request.image),
                sender=request.sender,
                project=request.project,
                account=request.account,
                max_per_day=settings.max_new_per_day,
                max_per_sender=settings.max_new_per_sender_per_day,
            )
        except MirrorError as exc:
            log.warning("on_demand_unavailable", error=exc.message, hint=exc.hint)
            return "unavailable"
        if added is Outcome.DAY_CAP:
            return self._refused(request, DAY_CAP)
        if added is Outcome.SENDER_CAP:
            return self._refused(request, SENDER_CAP)
        if added is Outcome.ADDED:
            log.info(
                "on_demand_added",
                image=str(request.image),
                project=request.project,
                account=request.account,
                sender=request.sender,
            )
        self._on_added()
        return str(added)

    def _refused(self, request: MissRequest, reason: str) -> str:
        log.info(
            "on_demand_refused",
            image=str(request.image),
            reason=reason,
            project=request.project,
            account=request.account,
            sender=request.sender,
        )
        try:
            self._refuse(request, reason)
        except MirrorError as exc:  # the include waits its time out instead
            log.warning("on_demand_refusal_not_written", error=exc.message)
        return "refused"

    def _invalid(self, reason: str) -> None:
        self.outcomes["invalid"] += 1
        now = time.monotonic()
        if now - self._invalid_said_at >= INVALID_LOG_SECONDS:
            self._invalid_said_at = now
            log.warning(
                "on_demand_reports_dropped",
                dropped=self.outcomes["invalid"],
                last_reason=reason,
                hint="reports that are not what mirror's include sends are dropped",
            )
