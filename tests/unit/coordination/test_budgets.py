"""Two processes' budgets on one ledger: what one spends, the other cannot."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from mirror.coordination.ledger import QuotaLedger
from mirror.engine.quota import Budget, QuotaWait
from mirror.errors import CoordinationError

FIGURES = {"ratelimit-limit": "10;w=3600", "docker-ratelimit-source": "192.0.2.7"}
MANIFEST = "https://registry-1.docker.io/v2/library/nginx/manifests/"


def answer(method: str, remaining: int) -> httpx.Response:
    headers = {**FIGURES, "ratelimit-remaining": f"{remaining};w=3600"}
    return httpx.Response(200, headers=headers, request=httpx.Request(method, MANIFEST + "1.27"))


def budget(table) -> Budget:
    ledger = QuotaLedger(table)
    return Budget("docker.io", "anonymous", reserve=1, shared=partial(ledger.quota, "docker.io"))


def test_pulls_one_process_spends_are_refused_to_the_other(table, another):
    mine, theirs = budget(table), budget(another)
    mine.observe(answer("HEAD", remaining=4))
    theirs.observe(answer("HEAD", remaining=4))
    mine.take()
    mine.take()
    theirs.take()  # the third of the three above the reserve
    with pytest.raises(QuotaWait) as refused:
        theirs.take()  # its own figures say 3 left; the ledger says none
    assert "1 of 10 pulls left for all mirror processes, reserve 1" in refused.value.reason
    assert theirs.available() == 2  # its own view alone would have spent it


def test_a_settled_pull_leaves_the_ledger_as_the_upstream_counted(table, another):
    mine, theirs = budget(table), budget(another)
    mine.observe(answer("HEAD", remaining=6))
    mine.take()
    theirs.observe(answer("HEAD", remaining=6))
    theirs.take()
    mine.observe(answer("GET", remaining=5))  # my GET's answer: the upstream counted it
    mine.settle(spent=True)
    item = table.get("quota", "docker.io|192.0.2.7")
    assert (item["remaining"], item["pending"]) == (4, 1)  # 5 left, one pull under way
    theirs.observe(answer("HEAD", remaining=3))  # someone outside mirror pulled twice
    item = table.get("quota", "docker.io|192.0.2.7")
    assert (item["remaining"], item["pending"]) == (2, 1)


def test_a_429_one_process_gets_makes_the_other_wait_too(table, another):
    mine, theirs = budget(table), budget(another)
    for process in (mine, theirs):
        process.observe(answer("HEAD", remaining=8))
    mine.take()
    mine.exhausted(retry_after=90)
    mine.settle(spent=False)
    with pytest.raises(QuotaWait) as refused:
        theirs.take()
    assert 85 < refused.value.seconds <= 90
    assert "429" in refused.value.reason


def test_a_budget_without_a_ledger_spends_on_its_own_figures(table):
    alone = Budget("docker.io", "anonymous", reserve=1)
    alone.observe(answer("HEAD", remaining=3))
    alone.take()
    alone.take()
    assert table.query("quota") == []


class Unreachable:
    """A ledger quota whose table cannot be reached."""

    def __getattr__(self, name: str):
        def refuse(*args, **kwargs):
            raise CoordinationError("DynamoDB UpdateItem on table mirror-state: timed out")

        return refuse


def test_a_ledger_that_cannot_be_reached_makes_pulls_wait_and_costs_no_image():
    budget = Budget("docker.io", "anonymous", shared=lambda counted: Unreachable())
    budget.observe(answer("HEAD", remaining=8))  # its figures not shared: logged, no error
    with pytest.raises(QuotaWait) as waiting:
        budget.take()
    assert "timed out" in waiting.value.reason
    assert budget.available() == 8  # nothing left claimed
