"""CloudWatch Embedded Metric Format: metrics a bare Fargate task can alarm on, no agent.

A pass's figures and a liveness heartbeat are written as EMF documents, which are JSON log
lines: CloudWatch Logs extracts the metrics from them (awslogs is enough), and the same line
stays readable in Logs Insights with its `run_id`. Every document names the `Service`
dimension, one value per deployment (the ECS template sets it to the stack name), so two
deployments in one account never mix and each stack's alarms select its own.

Specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from mirror.config.model import MetricsSettings, check_dimension_value, check_namespace
from mirror.engine.report import Action, PassReport
from mirror.errors import ConfigError
from mirror.service.runs import log_format

__all__ = ["EmfSettings", "emit", "heartbeat", "pass_documents", "resolve_emf"]

metrics_log = structlog.get_logger("mirror.metrics")

NAMESPACE_ENV = "MIRROR_METRICS_NAMESPACE"
SERVICE_ENV = "MIRROR_METRICS_SERVICE"


@dataclass(frozen=True)
class EmfSettings:
    namespace: str
    service: str


def resolve_emf(settings: MetricsSettings, environ: Mapping[str, str] = os.environ) -> EmfSettings:
    """The config's `metrics:`, with the deployment's environment winning (the template
    knows the stack; the config, shared between stacks, does not)."""
    namespace = environ.get(NAMESPACE_ENV) or settings.namespace
    service = environ.get(SERVICE_ENV) or settings.service
    try:
        return EmfSettings(check_namespace(namespace), check_dimension_value(service))
    except ValueError as exc:
        where = f"the config or {NAMESPACE_ENV}/{SERVICE_ENV}"
        raise ConfigError(f"metrics: {exc} (from {where})") from None


def _document(
    settings: EmfSettings,
    dimensions: dict[str, str],
    metrics: dict[str, tuple[float, str]],
    timestamp: float | None,
) -> dict[str, Any]:
    """One document: its directive, its dimension values and metric values as members."""
    return {
        "_aws": {
            "Timestamp": int((time.time() if timestamp is None else timestamp) * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": settings.namespace,
                    "Dimensions": [["Service", *dimensions]],
                    "Metrics": [{"Name": n, "Unit": unit} for n, (_, unit) in metrics.items()],
                }
            ],
        },
        "Service": settings.service,
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
    }


def pass_documents(
    settings: EmfSettings, report: PassReport, timestamp: float | None = None
) -> list[dict[str, Any]]:
    """The pass's totals (dimension Service), then one document per upstream registry
    (Service, Registry): pulls spent, the fewest remaining, seconds waited for quota."""
    totals: dict[str, tuple[float, str]] = {
        "ImagesCopied": (report.count(Action.COPIED), "Count"),
        "ImagesSkipped": (report.count(Action.SKIPPED), "Count"),
        "ImagesDeferred": (report.count(Action.DEFERRED), "Count"),
        "ImagesFailed": (report.count(Action.FAILED), "Count"),
        "PassErrors": (len(report.errors) + len(report.settings_refused), "Count"),
        "BytesCopied": (sum(r.bytes for r in report.images), "Bytes"),
        "UpstreamPulls": (sum(u.pulls for u in report.registries), "Count"),
        "PassSeconds": (round(report.seconds, 3), "Seconds"),
        "Heartbeat": (1, "Count"),
    }
    documents = [_document(settings, {}, totals, timestamp)]
    for usage in report.registries:
        metrics: dict[str, tuple[float, str]] = {
            "UpstreamPulls": (usage.pulls, "Count"),
            "QuotaWaitSeconds": (round(usage.waited_seconds, 3), "Seconds"),
        }
        remaining = [c.remaining for c in usage.credentials if c.remaining is not None]
        if remaining:
            metrics["QuotaRemaining"] = (min(remaining), "Count")
        documents.append(_document(settings, {"Registry": usage.registry}, metrics, timestamp))
    return documents


def heartbeat(settings: EmfSettings, timestamp: float | None = None) -> dict[str, Any]:
    """The daemon's "I am live": missing heartbeats are what the template's alarm breaches on."""
    return _document(settings, {}, {"Heartbeat": (1, "Count")}, timestamp)


def emit(settings: MetricsSettings, documents: list[dict[str, Any]]) -> None:
    """Write documents as `metrics` events in the JSON log; nothing in a terminal, where no
    CloudWatch reads them, nor when the config says `metrics.emf: false`."""
    if settings.emf and log_format() == "json":
        for document in documents:
            metrics_log.info("metrics", **document)
