"""Budgets read the registry's own figures and say "wait" instead of overspending."""

import httpx
import pytest

from mirror.engine.quota import Budget, QuotaWait, recheck_interval
from mirror.oci.throttle import Pacer, RateLimit


def response(**headers: str) -> httpx.Response:
    """A HEAD's answer: it carries the figures but is not a pull."""
    return httpx.Response(200, headers=headers, request=httpx.Request("HEAD", HEAD_URL))


HEAD_URL = "https://r/v2/library/a/manifests/1"


@pytest.mark.parametrize(
    ("limit", "remaining", "expected"),
    [
        ("100;w=21600", "76;w=21600", (100, 76, 21600.0)),
        ("100", "76", (100, 76, 0.0)),
        ("100, 100;w=3600", "7;w=3600", (100, 7, 3600.0)),
        (" 5 ; w = 20", "0;w=20", (5, 0, 20.0)),
    ],
)
def test_rate_limit_headers_parse(limit, remaining, expected):
    seen = RateLimit.from_headers({"ratelimit-limit": limit, "ratelimit-remaining": remaining})
    assert seen is not None
    assert (seen.limit, seen.remaining, seen.window) == expected


@pytest.mark.parametrize(
    "headers",
    [{}, {"ratelimit-limit": "100"}, {"ratelimit-limit": "lots", "ratelimit-remaining": "x"}],
)
def test_missing_or_malformed_headers_mean_no_advertised_limit(headers):
    assert RateLimit.from_headers(headers) is None


def test_an_unlimited_registry_never_waits():
    budget = Budget("quay.io", "anonymous")
    for _ in range(100):
        budget.take()
    assert budget.available() is None


def test_gets_in_flight_count_against_the_remaining_quota():
    budget = Budget("docker.io", "anonymous")
    budget.observe(response(**{"ratelimit-limit": "10;w=60", "ratelimit-remaining": "2;w=60"}))
    budget.take()
    budget.take()
    with pytest.raises(QuotaWait) as caught:
        budget.take()
    assert caught.value.seconds == recheck_interval(60) == 3.0
    budget.settle(spent=True)
    assert budget.spent == 1 and budget.available() == 1


def test_the_reserve_is_never_spent():
    budget = Budget("docker.io", "anonymous", reserve=2)
    budget.observe(response(**{"ratelimit-limit": "10;w=60", "ratelimit-remaining": "3;w=60"}))
    budget.take()
    with pytest.raises(QuotaWait, match="3 of 10 pulls left, reserve 2"):
        budget.take()


def test_a_quota_429_blocks_until_retry_after():
    now = [100.0]
    budget = Budget("docker.io", "anonymous", clock=lambda: now[0])
    budget.observe(response(**{"ratelimit-limit": "10;w=60", "ratelimit-remaining": "9;w=60"}))
    assert budget.exhausted(retry_after=30).seconds == 30
    with pytest.raises(QuotaWait) as caught:
        budget.take()
    assert caught.value.seconds == 30
    now[0] += 30
    # It refused while claiming 9 left: 9 are someone else's, in this window and the next.
    budget.observe(response(**{"ratelimit-limit": "10;w=60", "ratelimit-remaining": "9;w=60"}))
    assert budget.available() == 0
    budget.observe(response(**{"ratelimit-limit": "10;w=60", "ratelimit-remaining": "10;w=60"}))
    budget.take()


def test_a_429_while_the_headers_claim_pulls_left_teaches_the_budget_their_overclaim():
    now = [100.0]
    budget = Budget("docker.io", "anonymous", clock=lambda: now[0])
    claimed = {"ratelimit-limit": "5;w=40"}
    budget.observe(response(**claimed, **{"ratelimit-remaining": "2;w=40"}))

    wait = budget.exhausted(retry_after=None)

    assert wait.seconds == 2.0  # re-checked with a free HEAD a twentieth of the window on
    assert budget.overclaim == 2
    now[0] += 2
    budget.observe(response(**claimed, **{"ratelimit-remaining": "2;w=40"}))
    assert budget.available() == 0  # 2 claimed, 2 known to be someone else's: wait
    budget.observe(response(**claimed, **{"ratelimit-remaining": "5;w=40"}))  # new window
    assert budget.available() == 3
    for _ in range(3):
        budget.take()
    with pytest.raises(QuotaWait, match="overclaim by 2"):
        budget.take()


def test_a_quota_429_without_any_figures_backs_off_more_each_time():
    budget = Budget("quay.io", "anonymous")
    waits = [budget.exhausted(retry_after=None).seconds for _ in range(6)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 120.0, 120.0]


def test_recheck_interval_scales_with_the_window():
    assert recheck_interval(20) == 1.0
    assert recheck_interval(21600) == 300.0
    assert recheck_interval(0) == 10.0


def test_a_pull_whose_answer_arrived_is_not_counted_twice_before_it_settles():
    budget = Budget("docker.io", "anonymous", reserve=2)
    budget.observe(response(**{"ratelimit-limit": "4;w=600", "ratelimit-remaining": "4;w=600"}))
    budget.take()
    request = httpx.Request("GET", "https://r/v2/library/a/manifests/sha256:1")
    answered = {"ratelimit-limit": "4;w=600", "ratelimit-remaining": "3;w=600"}
    budget.observe(httpx.Response(200, headers=answered, request=request))
    budget.take()  # 3 left, 1 above the reserve: the first GET is already in the 3
    with pytest.raises(QuotaWait):
        budget.take()
    budget.settle(spent=True)
    budget.settle(spent=True)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pacer_spaces_calls_at_its_rate(monkeypatch):
    clock, slept = Clock(), []
    monkeypatch.setattr("mirror.oci.throttle.time.sleep", slept.append)
    pacer = Pacer(2.0, clock)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.5, 1.0]  # the second and third wait for their slots


def test_a_pacer_without_a_rate_learns_one_from_a_throttle_and_halves_it(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mirror.oci.throttle.time.sleep", lambda _: None)
    pacer = Pacer(None, clock)
    for _ in range(9):  # eight intervals of 0.25 s: calls went at 4 a second
        pacer.wait()
        clock.now += 0.25
    pacer.slow_down()
    assert pacer.rate == 2.0
    pacer.slow_down()  # the same burst's other 429s: no second halving within a second
    assert pacer.rate == 2.0
    clock.now += 1.0
    pacer.slow_down()
    assert pacer.rate == 1.0
    for _ in range(5):
        clock.now += 1.1
        pacer.slow_down()
    assert pacer.rate == Pacer.MIN_RATE


def test_a_burst_teaches_at_most_the_first_rate(monkeypatch):
    clock = Clock()
    pacer = Pacer(None, clock)
    for _ in range(16):
        pacer.wait()
        clock.now += 0.001
    pacer.slow_down()
    assert pacer.rate == Pacer.FIRST_RATE


def test_only_a_429_without_rate_limit_headers_slows_a_pacer():
    pacer = Pacer(4.0)
    quota = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
    pacer.observe(httpx.Response(429, headers=quota, request=httpx.Request("GET", HEAD_URL)))
    assert pacer.rate == 4.0  # a spent quota: the Budget's business
    pacer.observe(httpx.Response(429, request=httpx.Request("GET", HEAD_URL)))
    assert pacer.rate == 2.0


def test_a_throttle_wait_says_so():
    budget = Budget("public.ecr.aws", "anonymous")
    assert budget.throttled().throttled is True
    assert budget.exhausted(retry_after=None).throttled is False
