"""When the daemon is unhealthy: only when it cannot do its job, so that ECS replacing the
task could help. A restart fixes a wedged scheduler, a pass that hangs, or a target that a
new task (a new network path, fresh credentials) may reach again; it fixes nothing about an
image deleted upstream or an upstream outage, which are reported in /healthz, the metrics
and the alarms instead. A config that never loaded cannot happen while serving: a broken
config at start is exit 2 (the template's stopped-task rule tells someone).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STUCK_SECONDS", "Liveness", "pass_allowance"]

STUCK_SECONDS = 60.0  # the main loop ticks every half second; a minute of silence is stuck


def pass_allowance(
    unhealthy_after: int, interval: float, image_timeout: float, max_wait: float
) -> float:
    """How long a pass may run before it counts as hung: `unhealthy_after` intervals, but at
    least one image's own deadline (a short `every:` must not condemn one large copy), plus
    the quota wait the pass was allowed."""
    return max(unhealthy_after * interval, image_timeout) + max_wait


@dataclass
class Liveness:
    unhealthy_after: int
    allowance: float  # pass_allowance(...)
    ticked_at: float  # the main loop's last tick
    pass_started_at: float | None = None  # the pass under way, if any
    target_down_passes: int = 0  # passes in a row in which the target refused every connection
    # When a pass last ran to its end (failed images or not), or the daemon started: a
    # pass that crashes every time never gets there.
    completed_at: float | None = None

    def problems(self, now: float) -> list[str]:
        found = []
        if now - self.ticked_at > STUCK_SECONDS:
            found.append(f"the scheduler has not run for {now - self.ticked_at:.0f} s")
        if self.pass_started_at is not None and now - self.pass_started_at > self.allowance:
            found.append(
                f"a pass has run for {now - self.pass_started_at:.0f} s, past the "
                f"{self.allowance:.0f} s it may take"
            )
        if self.target_down_passes >= self.unhealthy_after:
            found.append(f"the target was unreachable in the last {self.target_down_passes} passes")
        if self.completed_at is not None and now - self.completed_at > self.allowance:
            found.append(
                f"no pass has completed for {now - self.completed_at:.0f} s, past the "
                f"{self.allowance:.0f} s a pass may take"
            )
        return found
