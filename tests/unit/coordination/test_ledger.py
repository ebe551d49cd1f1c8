"""The shared quota ledger: several processes on one quota never spend the same pull."""

from __future__ import annotations

import threading

from mirror.coordination.ledger import CLAIM_SECONDS, OBSERVE_SECONDS, QUIET_SECONDS, SharedQuota
from mirror.oci.throttle import RateLimit

HOUR = 3600.0


def figures(remaining: int, limit: int = 100) -> RateLimit:
    return RateLimit(limit, remaining, HOUR, "192.0.2.7")


def item(table, quota: SharedQuota) -> dict:
    found = table.get("quota", quota.key)
    assert found is not None
    return found


def test_with_no_figures_shared_yet_the_ledger_refuses_nothing(table):
    assert SharedQuota(table, "docker.io", "192.0.2.7").take(reserve=5) is None
    assert table.get("quota", "docker.io|192.0.2.7") is None  # and wrote nothing


def test_processes_racing_for_the_last_pulls_get_one_each_and_no_more(table, another):
    SharedQuota(table, "docker.io", "192.0.2.7").observe(figures(remaining=12))
    processes = [SharedQuota(t, "docker.io", "192.0.2.7") for t in (table, another)]
    granted: list[bool] = []
    lock = threading.Lock()

    def spend(quota: SharedQuota) -> None:
        for _ in range(10):
            taken = quota.take(reserve=2) is None
            with lock:
                granted.append(taken)

    threads = [threading.Thread(target=spend, args=(q,)) for q in processes for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 10  # 12 left, a reserve of 2: ten pulls in all
    assert item(table, processes[0])["remaining"] == 2
    assert item(table, processes[0])["pending"] == 10


def test_a_settled_pull_counts_what_the_upstream_said_less_the_others_in_flight(table, another):
    mine, theirs = SharedQuota(table, "docker.io", "a"), SharedQuota(another, "docker.io", "a")
    mine.observe(figures(remaining=50))
    assert mine.take(reserve=0) is None
    assert theirs.take(reserve=0) is None
    assert theirs.take(reserve=0) is None
    # my GET's answer: 48 left upstream (my pull and one by a client outside mirror behind
    # the same address); the other process's two are still under way: 46 for anyone
    mine.settle(spent=True, seen=figures(remaining=48))
    assert (item(table, mine)["remaining"], item(table, mine)["pending"]) == (46, 2)
    theirs.settle(spent=True, seen=figures(remaining=47))  # as the ledger expected
    assert (item(table, mine)["remaining"], item(table, mine)["pending"]) == (46, 1)


def test_a_pull_the_registry_did_not_serve_is_given_back(table):
    quota = SharedQuota(table, "docker.io", "a")
    quota.observe(figures(remaining=5))
    assert quota.take(reserve=0) is None
    quota.settle(spent=False, seen=None)
    assert (item(table, quota)["remaining"], item(table, quota)["pending"]) == (5, 0)


def test_a_figure_that_would_raise_the_ledger_waits_until_pulls_have_settled(table, clock):
    quota = SharedQuota(table, "docker.io", "a", clock=clock)
    quota.observe(figures(remaining=40))
    assert quota.take(reserve=0) is None
    # an answer sent before that pull was counted may arrive after it: not trusted
    quota.observe(figures(remaining=41))
    assert item(table, quota)["remaining"] == 39
    quota.settle(spent=True, seen=figures(remaining=39))
    clock.now += 1
    quota.observe(figures(remaining=90))  # the window moved on, but it is too soon to say
    assert item(table, quota)["remaining"] == 39
    clock.now += max(QUIET_SECONDS, OBSERVE_SECONDS)  # the same figure, asked again later
    quota.observe(figures(remaining=90))
    assert item(table, quota)["remaining"] == 90


def test_a_429_blocks_every_process_until_the_wait_is_over(table, another, clock):
    mine = SharedQuota(table, "docker.io", "a", clock=clock)
    theirs = SharedQuota(another, "docker.io", "a", clock=clock)
    mine.observe(figures(remaining=30))
    mine.exhausted(blocked_for=120)
    refusal = theirs.take(reserve=0)
    assert refusal is not None and refusal.blocked_for == 120
    assert "429" in refusal.reason
    clock.now += 121
    theirs.observe(figures(remaining=30))  # the window moved on: a HEAD says so
    assert theirs.take(reserve=0) is None


def test_the_claims_of_a_process_that_died_mid_get_are_cleared_once_stale(table, clock):
    dead = SharedQuota(table, "docker.io", "a", clock=clock)
    dead.observe(figures(remaining=3))
    for _ in range(3):
        assert dead.take(reserve=0) is None  # ...and the process is killed: never settled
    alive = SharedQuota(table, "docker.io", "a", clock=clock)
    assert alive.take(reserve=0) is not None  # nothing left while the claims may be live
    clock.now += CLAIM_SECONDS + 1
    assert alive.take(reserve=0) is not None  # this refusal clears the stale claims
    assert item(table, alive)["pending"] == 0
    alive.observe(figures(remaining=2))  # the upstream's own figure counts from there
    assert alive.take(reserve=0) is None


def test_an_unchanged_figure_is_written_again_only_now_and_then(table, clock):
    quota = SharedQuota(table, "docker.io", "a", clock=clock)
    quota.observe(figures(remaining=9))
    first = item(table, quota)["observed_at"]
    clock.now += 1
    quota.observe(figures(remaining=9))
    assert item(table, quota)["observed_at"] == first
    quota.observe(figures(remaining=8))  # a change is written at once
    assert item(table, quota)["remaining"] == 8
