"""Prometheus metrics for the daemon, built from each pass's report.

A registry of its own (not the global default) so tests and repeated daemons in one
process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from mirror.report import Action, PassReport

__all__ = ["DaemonMetrics"]


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.images = Gauge(
            "mirror_images", "Images by state in the last pass", ["state"], registry=r
        )
        self.bytes = Counter("mirror_bytes_copied", "Bytes copied to the target", registry=r)
        self.pulls = Counter(
            "mirror_upstream_pulls",
            "Upstream manifest GETs (what rate limits count)",
            ["registry", "credential"],
            registry=r,
        )
        self.remaining = Gauge(
            "mirror_upstream_quota_remaining",
            "Pulls left in the upstream's window, as its last answer said",
            ["registry", "credential"],
            registry=r,
        )
        self.waited = Counter(
            "mirror_quota_wait_seconds", "Seconds spent waiting for quota", ["registry"], registry=r
        )
        self.failures = Counter(
            "mirror_image_failures", "Failed images by error code", ["code"], registry=r
        )
        self.passes = Counter("mirror_passes", "Passes by result", ["result"], registry=r)
        self.duration = Gauge(
            "mirror_pass_duration_seconds", "Duration of the last pass", registry=r
        )
        self.last_success = Gauge(
            "mirror_last_success_timestamp_seconds",
            "Unix time of the last pass with no failed image",
            registry=r,
        )
        self.pruned = Counter(
            "mirror_pruned_images", "Images deleted by the daemon's prune", registry=r
        )
        self.prune_failures = Counter(
            "mirror_prune_failures",
            "Prunes aborted, and images whose deletion failed",
            registry=r,
        )
        self.config_errors = Counter(
            "mirror_config_errors",
            "Config re-reads that failed (the last good one ran)",
            registry=r,
        )

    def record(self, report: PassReport, finished_at: float) -> None:
        for action in Action:
            self.images.labels(str(action)).set(report.count(action))
        self.bytes.inc(sum(r.bytes for r in report.images))
        for result in report.images:
            if result.action is Action.FAILED and result.error is not None:
                self.failures.labels(result.error.code).inc()
        for usage in report.registries:
            if usage.waited_seconds:
                self.waited.labels(usage.registry).inc(usage.waited_seconds)
            for credential in usage.credentials:
                labels = (usage.registry, credential.credential)
                self.pulls.labels(*labels).inc(credential.pulls)
                if credential.remaining is not None:
                    self.remaining.labels(*labels).set(credential.remaining)
        self.duration.set(report.seconds)
        self.passes.labels("failed" if report.failed else "ok").inc()
        if not report.failed:
            self.last_success.set(finished_at)

    def render(self) -> bytes:
        text: bytes = generate_latest(self.registry)
        return text
