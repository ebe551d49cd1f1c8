"""Leases on work: one holder at a time, renewed while held, taken over once expired."""

from __future__ import annotations

import structlog

from mirror.coordination.leases import Leases


def test_one_process_holds_a_lease_and_another_is_told_who(table, another, clock):
    mine = Leases(table, "sync@ci:1", ttl=60, clock=clock)
    theirs = Leases(another, "daemon@task:7", ttl=60, clock=clock)
    assert mine.take("repository:mirror/docker-hub/library/nginx") is None
    holder = theirs.take("repository:mirror/docker-hub/library/nginx")
    assert holder is not None
    assert (holder.owner, holder.expires_in) == ("sync@ci:1", 60)
    assert theirs.take("repository:mirror/docker-hub/library/redis") is None  # another one


def test_a_lease_is_counted_within_a_process_and_given_up_by_its_last_holder(table, another, clock):
    mine = Leases(table, "a", ttl=60, clock=clock)
    theirs = Leases(another, "b", ttl=60, clock=clock)
    assert mine.take("repository:x") is None
    assert mine.take("repository:x") is None  # a second image of the same repository
    mine.release("repository:x")
    assert theirs.take("repository:x") is not None  # still one image copying
    mine.release("repository:x")
    assert table.get("lease", "repository:x") is None
    assert theirs.take("repository:x") is None


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost_it(table, another, clock):
    dead = Leases(table, "daemon@a", ttl=60, clock=clock)
    alive = Leases(another, "daemon@b", ttl=60, clock=clock)
    assert dead.take("leader") is None
    clock.now += 59
    assert alive.take("leader") is not None
    clock.now += 2  # the TTL has run out without a renewal
    assert alive.take("leader") is None
    with structlog.testing.capture_logs() as logs:
        dead.renew()  # it was only paused, and wakes up
    assert not dead.held("leader")
    assert [e["event"] for e in logs] == ["lease_lost"]
    assert table.get("lease", "leader")["owner"] == "daemon@b"


def test_renewing_keeps_a_lease_past_its_first_ttl(table, another, clock):
    mine = Leases(table, "a", ttl=60, clock=clock)
    theirs = Leases(another, "b", ttl=60, clock=clock)
    assert mine.take("leader") is None
    for _ in range(5):
        clock.now += 30
        mine.renew()
    assert theirs.take("leader") is not None
    mine.close()  # given up at once: no TTL to wait for
    assert theirs.take("leader") is None


def test_releasing_a_lease_another_took_over_leaves_theirs_alone(table, another, clock):
    slow = Leases(table, "a", ttl=60, clock=clock)
    fast = Leases(another, "b", ttl=60, clock=clock)
    assert slow.take("repository:x") is None
    clock.now += 61
    assert fast.take("repository:x") is None
    slow.release("repository:x")  # its delete is conditional on still owning it
    assert table.get("lease", "repository:x")["owner"] == "b"
