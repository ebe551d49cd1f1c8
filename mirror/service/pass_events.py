"""What a pass says when it ends, the same from `mirror sync` and the daemon: a `pass_done`
summary event (what failed, and why, in one line an on-call engineer can read), then the
pass's EMF documents for CloudWatch."""

from __future__ import annotations

import structlog

from mirror.config.model import MetricsSettings
from mirror.engine.report import PassReport
from mirror.service.emf import EmfSettings, emit, pass_documents

__all__ = ["announce_pass"]

pass_log = structlog.get_logger("mirror.passes")
FAILURES_LISTED = 20  # the rest are in the per-image events and the report


def announce_pass(report: PassReport, metrics: MetricsSettings, emf: EmfSettings | None) -> None:
    """`emf`: None for a plan, which copies nothing and must not look like a sync."""
    fields = {
        "command": report.command,
        "seconds": round(report.seconds, 3),
        **report.summary(),
        "failures": report.failures(FAILURES_LISTED),
        "errors": [e.code for e in report.errors],
        "settings_refused": [f"{r.repository}: {r.setting}" for r in report.settings_refused],
        "restored": len(report.restored),
        "upstream_pulls": {u.registry: u.pulls for u in report.registries},
    }
    if report.blob_mounting is not None:
        fields["blob_mounting"] = report.blob_mounting
    if report.retry_in is not None:
        fields["retry_in"] = round(report.retry_in, 1)
    if report.failed:
        pass_log.warning("pass_done", **fields)
    else:
        pass_log.info("pass_done", **fields)
    if emf is not None:
        emit(metrics, pass_documents(emf, report))
