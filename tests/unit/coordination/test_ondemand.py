"""The images builds asked for, and the daily caps on adding them, counted across every
daemon in one transaction."""

from __future__ import annotations

from mirror.coordination.ondemand import OnDemandImages, Outcome

CAPS = {"max_per_day": 3, "max_per_sender": 2}


def test_an_image_is_added_once_and_asking_again_is_only_counted(table, another, clock):
    mine, theirs = OnDemandImages(table, clock), OnDemandImages(another, clock)

    assert mine.add("docker.io/library/redis:7.4", sender="role-a", project="app-ci",
                    account="111122223333", **CAPS) is Outcome.ADDED  # fmt: skip
    clock.now += 30
    assert theirs.add("docker.io/library/redis:7.4", sender="role-b", **CAPS) is Outcome.KNOWN

    (added,) = mine.images()
    assert (added.image, added.project, added.account) == (
        "docker.io/library/redis:7.4", "app-ci", "111122223333"
    )  # fmt: skip
    assert (added.sender, added.requests) == ("role-a", 2)  # who asked first, and how often
    # asking again added nothing: the day's counters still allow two more for role-b
    assert theirs.add("docker.io/library/a:1", sender="role-b", **CAPS) is Outcome.ADDED
    assert theirs.add("docker.io/library/b:1", sender="role-b", **CAPS) is Outcome.ADDED


def test_a_sender_past_its_cap_is_refused_and_others_go_on_to_the_days_cap(table, another, clock):
    mine, theirs = OnDemandImages(table, clock), OnDemandImages(another, clock)

    assert mine.add("docker.io/library/a:1", sender="role-a", **CAPS) is Outcome.ADDED
    assert theirs.add("docker.io/library/b:1", sender="role-a", **CAPS) is Outcome.ADDED
    assert mine.add("docker.io/library/c:1", sender="role-a", **CAPS) is Outcome.SENDER_CAP
    assert theirs.add("docker.io/library/c:1", sender="role-b", **CAPS) is Outcome.ADDED
    assert mine.add("docker.io/library/d:1", sender="role-c", **CAPS) is Outcome.DAY_CAP

    # a refused image was not written: nothing half-added
    assert [a.image for a in mine.images()] == [
        "docker.io/library/a:1", "docker.io/library/b:1", "docker.io/library/c:1"
    ]  # fmt: skip
    clock.now += 86400  # the next day (UTC) counts afresh
    assert mine.add("docker.io/library/d:1", sender="role-c", **CAPS) is Outcome.ADDED


def test_refusals_written_to_the_target_are_capped_per_day(table, clock):
    store = OnDemandImages(table, clock)
    assert [store.may_refuse(3) for _ in range(5)] == [True, True, True, False, False]
    calls = []
    table.client.meta.events.register("before-call.dynamodb", lambda **_: calls.append(1))
    assert not store.may_refuse(3)
    assert calls == []  # spent for the day: the table is not asked again
    clock.now += 86400
    assert store.may_refuse(3)
    assert calls  # a new day asks again


def test_what_another_process_wrote_is_read_as_untrusted(table, clock):
    store = OnDemandImages(table, clock)
    assert store.add("docker.io/library/a:1", sender="role-a", **CAPS) is Outcome.ADDED
    table.put({"pk": "on-demand", "sk": "x\x1b[31m:1", "added_at": 1.0, "project": "p\nq"})
    table.put({"pk": "on-demand", "sk": "no-time"})  # not an image record: skipped

    images = store.images()
    assert [a.image for a in images] == ["x\\x1b[31m:1", "docker.io/library/a:1"]  # oldest first
    assert "\n" not in images[0].project
