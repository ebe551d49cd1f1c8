"""Prometheus metrics for the daemon, built from each pass's report.

A registry of its own (not the global default) so tests and repeated daemons in one
process never share counters. Every label value comes from a closed set: registries
from the config, credentials by position in their pool (never an account name), error
codes from the codes mirror and the OCI spec define (anything else an upstream writes
is counted as OTHER), so an upstream can neither name a series nor multiply them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from mirror.engine.report import Action, PassReport

__all__ = ["DaemonMetrics", "error_label"]

# The OCI distribution spec's error codes, Docker Hub's quota code, and mirror's own.
KNOWN_CODES = frozenset(
    {
        "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
        "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
        "TOOMANYREQUESTS", "TOOMANYREQUESTS_PLAIN", "NOT_FOUND",
        "CONFIG", "BAD_REFERENCE", "DIGEST_MISMATCH", "INVALID_UPSTREAM_DATA",
        "DEADLINE_EXCEEDED", "INVALID_TARGET_NAME", "NOTHING_SELECTED", "UNSUPPORTED_MANIFEST",
        "IMMUTABLE_TAG", "NOT_FOUND_OR_DENIED", "TOKEN_REALM_UNAVAILABLE", "TARGET_UNAVAILABLE",
        "UPSTREAM_UNAVAILABLE", "SIGNATURE_MISSING", "NETWORK", "INTERNAL", "QUOTA_DEFERRED",
        "STOPPING", "LIMIT_EXCEEDED", "THROTTLED", "DOWNLOAD_CUT", "HEAD_UNSUPPORTED",
        "TARGET_STORAGE", "ABANDONED",
    }
)  # fmt: skip


def error_label(code: str) -> str:
    if code in KNOWN_CODES:
        return code
    return "HTTP_5XX" if code.startswith("HTTP_5") else "OTHER"


def credential_label(position: int, credential: str) -> str:
    return "anonymous" if credential == "anonymous" else f"credential-{position}"


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
                self.failures.labels(error_label(result.error.code)).inc()
        for usage in report.registries:
            if usage.waited_seconds:
                self.waited.labels(usage.registry).inc(usage.waited_seconds)
            for position, credential in enumerate(usage.credentials):
                labels = (usage.registry, credential_label(position, credential.credential))
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
