"""The daemon is unhealthy only when a restart could help."""

from mirror.service.liveness import STUCK_SECONDS, Liveness, pass_allowance


def live(**changes: float) -> Liveness:
    return Liveness(**{"unhealthy_after": 3, "allowance": 100.0, "ticked_at": 1000.0, **changes})


def test_a_daemon_whose_loop_ticks_and_whose_pass_is_in_time_is_live():
    assert live(pass_started_at=950.0).problems(now=1000.0) == []


def test_a_scheduler_silent_for_a_minute_is_stuck():
    (problem,) = live().problems(now=1000.0 + STUCK_SECONDS + 1)
    assert "scheduler has not run for 61 s" in problem


def test_a_pass_past_its_allowance_is_hung():
    (problem,) = live(pass_started_at=800.0).problems(now=1000.0)
    assert "a pass has run for 200 s, past the 100 s it may take" in problem


def test_the_target_counts_only_after_unhealthy_after_passes_in_a_row():
    assert live(target_down_passes=2).problems(now=1000.0) == []
    (problem,) = live(target_down_passes=3).problems(now=1000.0)
    assert "the target was unreachable in the last 3 passes" in problem


def test_a_short_interval_still_lets_one_image_take_its_own_deadline():
    assert pass_allowance(2, interval=2.0, image_timeout=1800.0, max_wait=0.0) == 1800.0
    assert pass_allowance(3, interval=6 * 3600.0, image_timeout=1800.0, max_wait=600.0) == (
        18 * 3600.0 + 600.0
    )


def test_passes_that_never_complete_make_the_daemon_unhealthy_after_the_allowance():
    assert live(completed_at=950.0).problems(now=1000.0) == []
    (problem,) = live(completed_at=890.0).problems(now=1000.0)
    assert "no pass has completed for 110 s, past the 100 s a pass may take" in problem
