"""The retry policy: the first attempt runs without tenacity, and a failure there counts
as tenacity's first attempt, so the number of tries and the `retrying` lines are the same
as if tenacity had run every attempt."""

import pytest
import structlog

from mirror.errors import NotFoundError, ServerError, TooManyRequestsError
from mirror.oci.retry import RetryPolicy

FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001)


class Flaky:
    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_a_first_success_is_returned_after_one_call():
    fn = Flaky("done")
    assert FAST.call(fn) == "done"
    assert fn.calls == 1


def test_a_transient_first_failure_is_the_first_of_the_attempts():
    failure = ServerError("busy", status=503)
    fn = Flaky(failure, failure, failure, "never reached")
    with structlog.testing.capture_logs() as logs, pytest.raises(ServerError) as raised:
        FAST.call(fn)
    assert raised.value is failure
    assert fn.calls == 3  # attempts=3 in all, the untracked first one included
    assert [(e["event"], e["attempt"]) for e in logs] == [("retrying", 1), ("retrying", 2)]


def test_a_transient_first_failure_then_success():
    fn = Flaky(ServerError("busy", status=502), "done")
    assert FAST.call(fn) == "done"
    assert fn.calls == 2


def test_a_failure_that_is_not_transient_is_raised_unchanged_at_once():
    missing = NotFoundError("no such manifest", status=404)
    fn = Flaky(missing, "never reached")
    with structlog.testing.capture_logs() as logs, pytest.raises(NotFoundError) as raised:
        FAST.call(fn)
    assert raised.value is missing
    assert fn.calls == 1
    assert logs == []


def test_an_upstream_throttle_is_tried_twice_then_left_to_the_scheduler():
    upstream = RetryPolicy(attempts=5, initial_wait=0.001, retry_quota=False)
    throttled = TooManyRequestsError("Rate exceeded", status=429, retry_after=0.001)
    fn = Flaky(throttled, throttled, "never reached")
    with pytest.raises(TooManyRequestsError):
        upstream.call(fn)
    assert fn.calls == 2


def test_an_interrupt_is_never_retried():
    fn = Flaky(KeyboardInterrupt(), "never reached")
    with pytest.raises(KeyboardInterrupt):
        FAST.call(fn)
    assert fn.calls == 1
