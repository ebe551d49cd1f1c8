"""A registry's request rate shared by processes: no window holds more than the rate."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from mirror.coordination.pacing import SharedRate


def test_three_processes_together_never_send_more_than_the_rate_in_any_second(table):
    rate = 12.0
    processes = [SharedRate(table, "docker.io", rate) for _ in range(3)]
    sent: list[float] = []
    lock = threading.Lock()

    def send(pacer: SharedRate) -> None:
        for _ in range(14):
            pacer.take()
            with lock:
                sent.append(time.time())

    threads = [threading.Thread(target=send, args=(p,)) for p in processes for _ in range(2)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_second = Counter(math.floor(t) for t in sent)
    assert len(sent) == 84
    assert max(per_second.values()) <= rate
    assert time.time() - started >= 84 / rate - 1.5  # it did wait: 84 at 12 a second
    windows = {i["sk"]: i["used"] for i in table.query("pace")}
    assert all(used <= rate for used in windows.values())


def test_a_rate_under_one_a_second_spreads_over_longer_windows(table):
    slow = SharedRate(table, "public.ecr.aws", 0.5)
    assert (slow.window, slow.cap, slow.block) == (2, 1, 1)


def test_a_process_finding_no_room_waits_for_the_next_window(table):
    now = [1_800_000_000.2]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    first = SharedRate(table, "docker.io", 4.0, clock=lambda: now[0], sleep=sleep)
    second = SharedRate(table, "docker.io", 4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        first.take()  # blocks of one: the whole window's room
    second.take()
    assert slept == [0.8]  # until the next second began


def test_a_block_granted_after_its_window_ended_is_not_spent_in_the_next(table):
    """The table's answer can arrive after the second it booked ended: a request sent
    then would count against the next second's full share as well."""
    now = [1_800_000_000.9]

    class SlowTable:  # the conditional write takes 150 ms to answer
        def update(self, *args: object, **kwargs: object) -> object:
            granted = table.update(*args, **kwargs)  # type: ignore[arg-type]
            now[0] += 0.15
            return granted

    pacer = SharedRate(SlowTable(), "docker.io", 4.0, clock=lambda: now[0])  # type: ignore[arg-type]
    pacer.take()
    sent_in = int(now[0])

    def used() -> dict[str, int]:
        return {str(i["sk"]): int(i["used"]) for i in table.query("pace")}

    assert sent_in == 1_800_000_001
    assert used() == {"docker.io|1800000000": 1, "docker.io|1800000001": 1}
    for _ in range(3):  # the rest of the second's share, each block granted in time
        pacer.take()
    assert used()["docker.io|1800000001"] == 4
