"""A registry that waits for its quota never holds up another; past the deadline, defer."""

import threading
import time

from mirror.engine.quota import QuotaWait
from mirror.engine.scheduler import NotYet, QuotaScheduler


def test_a_waiting_registry_does_not_block_the_others():
    done: list[str] = []
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def work(task: str, resumed: bool) -> None:
        with lock:
            attempts[task] = attempts.get(task, 0) + 1
        if task.startswith("hub") and attempts[task] == 1:
            raise QuotaWait("docker.io", 0.3, "spent")
        with lock:
            done.append(task)

    scheduler: QuotaScheduler[str] = QuotaScheduler(workers=2, max_wait=5)
    started = time.monotonic()
    waited = scheduler.run(
        [("docker.io", "hub-1"), ("docker.io", "hub-2"), ("quay.io", "q-1"), ("quay.io", "q-2")],
        work,
        lambda task, code, message: None,
    )

    assert done[:2] == ["q-1", "q-2"]
    assert sorted(done) == ["hub-1", "hub-2", "q-1", "q-2"]
    assert 0.3 <= time.monotonic() - started < 2
    assert waited.waited["docker.io"] >= 0.3 and "quay.io" not in waited.waited


def test_a_wait_past_the_deadline_defers_the_rest_of_that_registry():
    deferred: list[str] = []

    def work(task: str, resumed: bool) -> None:
        if task.startswith("hub"):
            raise QuotaWait("docker.io", 60, "spent")

    scheduler: QuotaScheduler[str] = QuotaScheduler(workers=1, max_wait=1)
    started = time.monotonic()
    scheduler.run(
        [("docker.io", "hub-1"), ("docker.io", "hub-2"), ("quay.io", "q-1")],
        work,
        lambda task, code, message: deferred.append(task),
    )

    assert deferred == ["hub-1", "hub-2"]
    assert time.monotonic() - started < 1


def test_resumed_tasks_are_told_so():
    seen: list[tuple[str, bool]] = []

    def work(task: str, resumed: bool) -> None:
        seen.append((task, resumed))
        if len(seen) == 1:
            raise QuotaWait("r", 0.05, "spent")

    QuotaScheduler(workers=1, max_wait=5).run([("r", "a")], work, lambda t, c, m: None)
    assert seen == [("a", False), ("a", True)]


def test_a_stop_request_starts_nothing_more_and_reports_the_rest():
    stop = threading.Event()
    started: list[str] = []
    deferred: list[tuple[str, str]] = []

    def work(task: str, resumed: bool) -> None:
        started.append(task)
        stop.set()  # SIGTERM arrives while the first image copies

    outcome = QuotaScheduler(workers=1, max_wait=5, stop=stop).run(
        [("r", "a"), ("r", "b"), ("q", "c")], work, lambda t, c, m: deferred.append((t, c))
    )

    assert started == ["a"]
    assert sorted(deferred) == [("b", "STOPPING"), ("c", "STOPPING")]
    assert outcome.retry_in is None


def test_a_registry_still_throttling_at_the_deadline_fails_its_tasks_not_defers_them():
    recorded: list[tuple[str, str]] = []

    def work(task: str, resumed: bool) -> None:
        raise QuotaWait("public.ecr.aws", 60, "throttled (429)", throttled=True)

    scheduler: QuotaScheduler[str] = QuotaScheduler(workers=1, max_wait=1)
    outcome = scheduler.run(
        [("public.ecr.aws", "a"), ("public.ecr.aws", "b")],
        work,
        lambda task, code, message: recorded.append((task, code)),
    )

    assert recorded == [("a", "THROTTLED"), ("b", "THROTTLED")]
    assert outcome.retry_in is None  # no quota window to come back for


def test_a_task_not_ready_goes_to_the_back_while_its_registrys_others_run():
    order: list[tuple[str, bool]] = []
    tries = {"leased": 0}

    def work(task: str, resumed: bool) -> None:
        if task == "leased":
            tries["leased"] += 1
            if tries["leased"] == 1:
                raise NotYet(0.2, "another process is copying it", code="LEASED")
        order.append((task, resumed))

    scheduler: QuotaScheduler[str] = QuotaScheduler(workers=1, max_wait=5)
    started = time.monotonic()
    scheduler.run(
        [("docker.io", "leased"), ("docker.io", "b"), ("docker.io", "c")],
        work,
        lambda task, code, message: None,
    )
    assert order == [("b", False), ("c", False), ("leased", True)]  # checked again
    assert 0.2 <= time.monotonic() - started < 2


def test_a_task_still_not_ready_at_the_deadline_is_deferred_with_its_code():
    deferred: list[tuple[str, str, str]] = []

    def work(task: str, resumed: bool) -> None:
        raise NotYet(0.3, f"{task} is leased", code="LEASED")

    scheduler: QuotaScheduler[str] = QuotaScheduler(workers=2, max_wait=1)
    started = time.monotonic()
    scheduler.run(
        [("docker.io", "a"), ("quay.io", "b")],
        work,
        lambda task, code, message: deferred.append((task, code, message)),
    )
    assert sorted(deferred) == [("a", "LEASED", "a is leased"), ("b", "LEASED", "b is leased")]
    assert 0.6 <= time.monotonic() - started < 1.5  # tried three times, not a tight loop
