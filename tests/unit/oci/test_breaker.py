"""The breaker waits out a registry that went away for a moment, and gives up on one that
stays away, instead of failing every image the moment it opens."""

import threading
import time

import pytest

from mirror.errors import UnavailableError
from mirror.oci.breaker import Breaker


def opened(**timing: float) -> Breaker:
    breaker = Breaker("target.test", "TARGET_UNAVAILABLE", **timing)
    for _ in range(3):
        breaker.check()
        breaker.failed()
    assert breaker.open
    return breaker


def test_a_closed_breaker_lets_everything_through():
    breaker = Breaker("target.test", "TARGET_UNAVAILABLE")
    breaker.failed()
    breaker.failed()
    breaker.check()  # two refusals are not three
    breaker.answered()
    assert not breaker.open


def test_after_the_pause_one_probe_goes_and_its_answer_releases_the_others():
    breaker = opened(pause=0.2, give_up=5.0)
    released: list[float] = []
    started = time.monotonic()

    def request() -> None:
        breaker.check()
        released.append(time.monotonic() - started)

    waiting = [threading.Thread(target=request) for _ in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.5)
    assert len(released) == 1  # the probe; the other two wait for its answer
    assert released[0] >= 0.18
    breaker.answered()
    for thread in waiting:
        thread.join(2)
    assert len(released) == 3 and not breaker.open


def test_a_refused_probe_doubles_the_pause_and_a_registry_away_too_long_fails_fast():
    breaker = opened(pause=0.1, give_up=0.6)
    started = time.monotonic()
    breaker.check()  # probe after 0.1 s
    breaker.failed()
    breaker.check()  # the next one 0.2 s later
    assert time.monotonic() - started >= 0.28
    breaker.failed()
    with pytest.raises(UnavailableError, match="refused every connection") as caught:
        breaker.check()
    assert caught.value.code == "TARGET_UNAVAILABLE"
    assert time.monotonic() - started < 1.5


def test_a_late_failure_of_a_request_sent_before_it_opened_does_not_reset_the_pause():
    breaker = opened(pause=0.3, give_up=5.0)
    breaker.failed()  # one sent before the breaker opened, refused late
    started = time.monotonic()
    breaker.check()
    assert 0.2 <= time.monotonic() - started < 0.6
