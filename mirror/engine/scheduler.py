"""Run image copies so that a registry waiting for its quota never holds up the others.

Work is queued per upstream registry, in the order given (most out of date first). A
task that raises QuotaWait goes back to the front of its queue and pauses that queue
alone; workers keep taking tasks from the registries that may spend. A pause that would
end after the pass's deadline (`--max-wait`) defers the registry's remaining tasks
instead: they are reported, not failed, and a later run picks them up. A registry that
is still throttling requests then (no quota to wait for, just too many 429s) fails them.

A task that raises NotYet (another mirror process holds its work) goes to the back of its
queue, not to be started again for a while; its registry's other tasks go on meanwhile.
One still waiting at the deadline is deferred with the code NotYet names.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

from mirror.engine import progress
from mirror.engine.quota import QuotaWait
from mirror.threads import ContextPool

__all__ = ["NotYet", "Outcome", "QuotaScheduler"]

T = TypeVar("T")
log = structlog.get_logger(__name__)


QUOTA_LOG_SECONDS = 30.0


class NotYet(Exception):
    """This task cannot run now, its registry's others can: try it again in `seconds`;
    past the deadline, defer it with `code` and this message."""

    def __init__(self, seconds: float, message: str, *, code: str) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.message = message
        self.code = code


@dataclass
class _Queue(Generic[T]):
    tasks: deque[T] = field(default_factory=deque)
    later: list[tuple[float, T]] = field(default_factory=list)  # (not before, task)
    resume_at: float = 0.0
    waited: float = 0.0
    announced_at: float | None = None  # when a wait was last logged at INFO

    def pause(self, now: float, seconds: float) -> None:
        until = now + seconds
        if until > self.resume_at:
            self.waited += until - max(now, self.resume_at)
            self.resume_at = until


@dataclass
class Outcome:
    waited: dict[str, float]  # seconds each registry spent paused
    retry_in: float | None = None  # earliest time a deferred registry may spend again


Defer = Callable[[T, str, str], None]  # task, code, message


class QuotaScheduler(Generic[T]):
    """`run(tasks, work, defer)`: `work(task, resumed)` copies one image and raises
    QuotaWait to pause its registry; `defer(task, code, message)` records one that ran out
    of time (QUOTA_DEFERRED, or THROTTLED when its registry was throttling, not counting)
    or that a stop request kept from starting (STOPPING)."""

    def __init__(
        self,
        workers: int,
        max_wait: float,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._max_wait = max_wait
        self._stop = stop or threading.Event()
        self._clock = clock
        self._retry_in: float | None = None

    def run(
        self,
        tasks: list[tuple[str, T]],
        work: Callable[[T, bool], None],
        defer: Defer[T],
    ) -> Outcome:
        """Run every task, unless a stop is requested: then start no more."""
        deadline = self._clock() + self._max_wait
        queues: dict[str, _Queue[T]] = {}
        for key, task in tasks:
            queues.setdefault(key, _Queue()).tasks.append(task)
        resumed: set[int] = set()
        running: dict[Future[None], tuple[str, T]] = {}
        with ContextPool(self._workers, thread_name_prefix="image") as pool:
            while running or any(q.tasks or q.later for q in queues.values()):
                if self._stop.is_set():
                    self._stopping(queues, defer)
                now = self._clock()
                for key, queue in queues.items():
                    self._due_again(queue, now)
                    while queue.tasks and queue.resume_at <= now and len(running) < self._workers:
                        task = queue.tasks.popleft()
                        running[pool.submit(work, task, id(task) in resumed)] = (key, task)
                paused = [q.resume_at for q in queues.values() if q.tasks and q.resume_at > now]
                paused += [at for q in queues.values() for at, _ in q.later]
                timeout = max(0.0, min(paused) - now) if paused else None
                if not running:
                    self._stop.wait(timeout or 0.0)
                    continue
                done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    key, task = running.pop(future)
                    error = future.exception()
                    if error is None:
                        continue
                    if isinstance(error, NotYet):
                        self._later(queues[key], task, error, deadline, defer)
                    elif isinstance(error, QuotaWait):
                        self._paused(key, queues[key], task, error, deadline, defer)
                    else:
                        raise error
                    resumed.add(id(task))
        waited = {key: round(q.waited, 3) for key, q in queues.items() if q.waited}
        return Outcome(waited, self._retry_in)

    def _stopping(self, queues: dict[str, _Queue[T]], defer: Defer[T]) -> None:
        for queue in queues.values():
            for task in [*queue.tasks, *(task for _, task in queue.later)]:
                defer(task, "STOPPING", "not started: mirror is shutting down")
            queue.tasks.clear()
            queue.later.clear()

    @staticmethod
    def _due_again(queue: _Queue[T], now: float) -> None:
        """Tasks put off by NotYet whose time has come, back at the end of the queue."""
        if not queue.later:
            return
        due = [task for at, task in queue.later if at <= now]
        queue.later = [(at, task) for at, task in queue.later if at > now]
        queue.tasks.extend(due)

    def _later(
        self, queue: _Queue[T], task: T, not_yet: NotYet, deadline: float, defer: Defer[T]
    ) -> None:
        at = self._clock() + not_yet.seconds
        if at > deadline:
            defer(task, not_yet.code, not_yet.message)
            return
        log.debug("image_later", reason=not_yet.message, in_seconds=round(not_yet.seconds, 1))
        queue.later.append((at, task))

    def _paused(
        self,
        key: str,
        queue: _Queue[T],
        task: T,
        quota_wait: QuotaWait,
        deadline: float,
        defer: Defer[T],
    ) -> None:
        now = self._clock()
        if now + quota_wait.seconds > deadline:
            retry_in = quota_wait.seconds
            if quota_wait.throttled:
                code, event = "THROTTLED", "throttled_past_max_wait"
                message = f"{quota_wait.registry}: still {quota_wait.reason} at --max-wait"
            else:
                code, event = "QUOTA_DEFERRED", "quota_deferred"
                message = f"{quota_wait.registry}: {quota_wait.reason}; next try in {retry_in:.0f}s"
                self._retry_in = min(self._retry_in or retry_in, retry_in)
            log.warning(
                event,
                registry=key,
                images=1 + len(queue.tasks),
                wait_seconds=round(quota_wait.seconds, 1),
                reason=quota_wait.reason,
            )
            for deferred in [task, *queue.tasks]:
                defer(deferred, code, message)
            queue.tasks.clear()
            return
        sink = progress.active()
        if sink is not None:
            sink.quota_wait(key, 1 + len(queue.tasks), quota_wait.seconds, deadline - now)
        # At INFO at most every QUOTA_LOG_SECONDS per registry: the re-checks every few
        # seconds say nothing new. Never while the live display shows it.
        news = queue.announced_at is None or now - queue.announced_at >= QUOTA_LOG_SECONDS
        if news:
            queue.announced_at = now
        say = log.info if news and sink is None else log.debug
        say(
            "quota_wait",
            registry=key,
            images=1 + len(queue.tasks),
            wait_seconds=round(quota_wait.seconds, 1),
            max_wait_left_seconds=round(max(0.0, deadline - now), 1),
            reason=quota_wait.reason,
        )
        queue.tasks.appendleft(task)
        queue.pause(now, quota_wait.seconds)
