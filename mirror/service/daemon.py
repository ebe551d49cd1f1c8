"""`mirror daemon`: `mirror sync` on a schedule, as an ECS service.

- A first pass at start, then every `daemon.every` (timed on the monotonic clock, so a
  wall clock that steps never delays a pass) or at the daily `daemon.at` times (UTC,
  through `schedule`); never two passes at once. Images deferred for quota come back as
  soon as their registry's window allows, and failed images after `daemon.retry_failed`
  (doubling while they keep failing), not only at the next scheduled pass.
- The config is re-read before every pass; a broken one is reported (log, metric,
  /healthz) and the last good one keeps running.
- SIGTERM, which ECS sends: no new image starts, the ones in flight may finish within
  `daemon.grace_seconds`, then the process exits 0; a pass cut short still logs its
  `pass_done` and metrics. A second signal exits at once. Tags are pushed last, so an
  abandoned image leaves no tag pointing at missing content.
- `/healthz` on `daemon.health_port` means liveness (mirror/service/liveness.py): 503 only when
  the daemon cannot do its job; failed and deferred images are in its body, in `/metrics`
  (Prometheus), and in the EMF documents of the JSON log, which the template alarms on.
  `mirror health` asks /healthz.
- Every line of a pass carries that pass's `run_id`; the daemon's own lines carry its own.
- With a coordination table (`coordination`, or MIRROR_COORDINATION_TABLE from the deploy
  template) several daemons run as one: the table is opened by the first pass and kept,
  and only the one holding the leader lease prunes, publishes the include and restores
  archived pins. On SIGTERM its leases are given up, so another takes over at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import schedule
import structlog

from mirror.config import Config, load_config, with_added_images
from mirror.config.model import DaemonSettings, queue_region
from mirror.coordination import Coordinator
from mirror.coordination.ondemand import OnDemandImages
from mirror.durations import parse_duration
from mirror.engine.ondemand import MissRequest, refusals_repository, write_refusal
from mirror.engine.report import Action, PassReport
from mirror.engine.sync import DUE_TOLERANCE, Pass, SyncOptions
from mirror.engine.wiring import (
    Clients,
    config_region,
    coordination_settings,
    on_demand_queue,
    open_coordinator,
)
from mirror.errors import ConfigError, MirrorError
from mirror.include.buildspec import collect_pulls, render, replica_registries
from mirror.include.publish import publish
from mirror.prune import restore_after_pass, run_prune
from mirror.service.emf import emit, heartbeat, resolve_emf
from mirror.service.health import HealthServer, Page, is_loopback
from mirror.service.healthcheck import STATE_ENV, write_state
from mirror.service.liveness import Liveness, pass_allowance
from mirror.service.metrics import DaemonMetrics
from mirror.service.misses import MissListener
from mirror.service.pass_events import announce_pass
from mirror.service.runs import bind_run, new_run_id

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)
TICK_SECONDS = 0.5
HEARTBEAT_SECONDS = 300.0  # an EMF heartbeat while live; the template alarms on its absence
FAILURES_SHOWN = 50  # in /healthz; the rest are in the logs
REFUSALS_PER_DAY = 100  # refusal manifests written to the target a day, at most


@dataclass
class _State:
    started_at: float
    last_success: float | None = None
    last_pass_failed: bool = False
    config_error: str | None = None
    passes: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # the last pass's
    deferred: int = 0


class Daemon:
    def __init__(self, config_source: str, *, shard: tuple[int, int], max_wait: float) -> None:
        self._source = config_source
        self._config = load_config(config_source)  # a broken config at start is exit 2
        self._shard = shard
        self._max_wait = max_wait
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signals = 0
        self._pass: threading.Thread | None = None
        self._due_at: float | None = time.monotonic()  # the first pass, now
        self._jobs = schedule.Scheduler()  # daemon.at: times of day, on the wall clock
        self._every: float | None = None  # daemon.every, on the monotonic clock
        self._next_every = 0.0
        self._current: Pass | None = None  # the pass under way
        self._failed_passes = 0  # in a row, for the back-off of retry_failed
        self._settings: DaemonSettings | None = None
        self._checked: dict[str, float] = {}  # target -> when it was last checked upstream
        self._coordination: Coordinator | None = None  # opened by the first pass
        self._listener: MissListener | None = None  # on_demand's, started by the first pass
        self._refusing: tuple[Config, Clients] | None = None  # the listener's target clients
        self._last_prune: float | None = None  # monotonic
        self.metrics = DaemonMetrics()
        self.state = _State(started_at=time.time())
        self._emf = resolve_emf(self._config.model.metrics)  # a bad override is exit 2
        self._run_id = new_run_id()
        self._beat_at = 0.0
        self.liveness = Liveness(
            unhealthy_after=self._config.model.daemon.unhealthy_after,
            allowance=self._allowance(self._config),
            ticked_at=time.monotonic(),
            completed_at=time.monotonic(),
        )

    # --- health ----------------------------------------------------------------------
    def _allowance(self, config: Config) -> float:
        model = config.model
        return pass_allowance(
            model.daemon.unhealthy_after,
            model.daemon.interval_seconds,
            model.timeouts.resolved().image,
            self._max_wait,
        )

    def problems(self) -> list[str]:
        return self.liveness.problems(time.monotonic())

    def healthy(self) -> bool:
        return not self.problems()

    def health(self, *, detailed: bool = True) -> dict[str, Any]:
        """The /healthz body: liveness, then what went wrong with images (not a reason to
        restart). The text of a config error only for a loopback listener (it may name
        buckets, parameters or files)."""
        error = self.state.config_error
        problems = self.problems()
        started = self.liveness.pass_started_at
        return {
            "status": "unhealthy" if problems else "ok",
            "problems": problems,
            "passes": self.state.passes,
            "last_success": self.state.last_success,
            "last_pass_failed": self.state.last_pass_failed,
            "failed_images": self.state.failures,
            "deferred_images": self.state.deferred,
            "target_unreachable_passes": self.liveness.target_down_passes,
            "pass_running_seconds": None if started is None else round(time.monotonic() - started),
            "config_error": error if detailed or error is None else True,
            "stopping": self._stop.is_set(),
        }

    # --- schedule --------------------------------------------------------------------
    def _plan(self, settings: DaemonSettings) -> None:
        if settings == self._settings:
            return
        self._jobs.clear()
        self._every = None
        if settings.at:
            for time_of_day in settings.at:
                self._jobs.every().day.at(time_of_day, "UTC").do(self.request_pass)
        else:
            self._every = settings.interval_seconds
            self._next_every = time.monotonic() + self._every
        self._settings = settings
        log.info("daemon_schedule", every=settings.every, at=settings.at)

    def request_pass(self, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        self._due_at = due if self._due_at is None else min(self._due_at, due)
        self._wake.set()

    # --- one pass --------------------------------------------------------------------
    def _reload(self) -> Config:
        try:
            config = load_config(self._source)
        except ConfigError as exc:
            self.state.config_error = str(exc)
            self.metrics.config_errors.inc()
            log.error("config_invalid", error=str(exc), hint="the last good config keeps running")
            return self._config
        self._config, self.state.config_error = config, None
        self.liveness.unhealthy_after = config.model.daemon.unhealthy_after
        self.liveness.allowance = self._allowance(config)
        return config

    def _run_pass(self) -> None:
        bind_run(new_run_id())  # this thread's lines, and the blob threads it starts
        self.liveness.pass_started_at = time.monotonic()
        try:
            self._pass_body()
        except Exception:  # a bug must not kill the service: a failed pass, tried again
            log.exception("pass_crashed")
            self._failed_pass(self._config)
        finally:
            self.liveness.pass_started_at = None

    def _coordinator(self, config: Config) -> Coordinator | None:
        """The coordination table, opened once (or again after the config names another);
        a table that cannot be used fails this pass, and the next tries again."""
        settings = coordination_settings(config)
        current = self._coordination
        if current is not None and (
            settings is None or current.table.name != settings.dynamodb_table
        ):
            current.close()
            self._coordination = current = None
        if current is None and settings is not None:
            self._coordination = current = open_coordinator(config, "daemon")
        return current

    def _on_demand(self, config: Config, coordinator: Coordinator | None) -> Config:
        """With `on_demand`: the listener on the queue started (once), and the config
        with the images builds asked for, which every pass keeps fresh from then on.
        What stops copy on miss is said every pass, and never stops the configured
        images."""
        if config.model.on_demand is None:
            return config
        if coordinator is None:
            log.error(
                "on_demand_without_table",
                hint="on_demand keeps what builds asked for in the coordination table: add "
                "coordination: {dynamodb_table: NAME}",
            )
            return config
        store = OnDemandImages(coordinator.table)
        if self._listener is None:
            try:
                queue = on_demand_queue(config)
            except ConfigError as exc:
                log.error("on_demand_without_queue", error=exc.message, hint=exc.hint)
                return config
            assert queue is not None, "on_demand is set"
            self._listener = self._start_listener(config, queue, store)
        try:
            return with_added_images(config, [a.image for a in store.images()])
        except MirrorError as exc:  # this pass without them; the next reads them again
            log.warning("on_demand_images_unread", error=exc.message, hint=exc.hint)
            return config

    def _start_listener(self, config: Config, queue: str, store: OnDemandImages) -> MissListener:
        import boto3

        region = queue_region(queue) or config_region(config)
        listener = MissListener(
            boto3.session.Session(region_name=region).client("sqs"),
            queue,
            store,
            lambda: self._config,
            self.request_pass,
            partial(self._refuse, store),
            self._stop,
        )
        threading.Thread(target=listener.run, name="on-demand", daemon=True).start()
        log.info("on_demand_listening", queue=queue)
        return listener

    def _refuse(self, store: OnDemandImages, request: MissRequest, reason: str) -> None:
        """The refusal, where the include that asked reads it (a capped number a day)."""
        if not store.may_refuse(REFUSALS_PER_DAY):
            return
        config, clients = self._refusal_target()
        repository = refusals_repository(config)
        write_refusal(clients.target, repository, request.written, reason, at=time.time())

    def _refusal_target(self) -> tuple[Config, Clients]:
        """The target's clients for refusals, with their repository made ready: kept for
        as long as the config is the same (only the listener's thread uses them), since a
        burst of reports may bring a hundred refusals."""
        config, held = self._config, self._refusing
        if held is not None and held[0] is config:
            return held
        if held is not None:
            held[1].close()
            self._refusing = None
        clients = Clients(config, coordinator=self._coordination)
        try:
            clients.prepare_repository(refusals_repository(config))
        except BaseException:
            clients.close()
            raise
        self._refusing = (config, clients)
        return self._refusing

    def _pass_body(self) -> None:
        config = self._reload()
        self._plan(config.model.daemon)
        try:
            coordinator = self._coordinator(config)
            config = self._on_demand(config, coordinator)
        except MirrorError as exc:
            log.error("pass_failed", error=str(exc), hint=exc.hint)
            self._failed_pass(config)
            return
        try:
            clients = Clients(config, coordinator=coordinator)
        except MirrorError as exc:  # ECR's login or the target's credentials: no target
            log.error("pass_failed", error=str(exc), hint=exc.hint)
            self.liveness.target_down_passes += 1
            self._failed_pass(config)
            return
        try:
            options = SyncOptions(
                max_wait=self._max_wait,
                shard=self._shard,
                stop=self._stop,
                checked_at=self._checked,
                default_refresh=config.model.daemon.interval_seconds,
            )
            self._current = Pass(config, clients, options)
            report = self._current.run()
            leader = self._current.leads()
            if leader:
                restore_after_pass(config, clients, report)
            down = clients.target_breaker.open
            self.liveness.target_down_passes = self.liveness.target_down_passes + 1 if down else 0
            self._after(config, clients, report, leader=leader)
        finally:
            self._current = None
            clients.close()

    def _failed_pass(self, config: Config) -> None:
        """A pass that could not run, or crashed: tried again after the back-off."""
        self.state.last_pass_failed = True
        self._retry_failed(config)

    def _retry_failed(self, config: Config) -> None:
        """Failed images (or a failed pass) are tried again after `retry_failed`, doubled
        for every pass in a row that failed, and never later than the next scheduled pass:
        a two-second outage must not cost a six-hour interval."""
        if self._stop.is_set():
            return
        self._failed_passes += 1
        settings = config.model.daemon
        first = parse_duration(settings.retry_failed)
        delay = min(settings.interval_seconds, first * 2 ** min(self._failed_passes - 1, 20))
        log.info(
            "failed_images_retried", in_seconds=round(delay), failed_passes=self._failed_passes
        )
        self.request_pass(delay=delay)

    def _announce(self, config: Config, report: PassReport) -> None:
        """What a pass did, in the state /healthz shows, the metrics and `pass_done`."""
        finished = time.time()
        self.state.passes += 1
        self.state.last_pass_failed = report.failed
        if not report.failed:
            self.state.last_success = finished
        self.state.failures = report.failures(FAILURES_SHOWN)
        self.state.deferred = report.count(Action.DEFERRED)
        self.metrics.record(report, finished)
        announce_pass(report, config.model.metrics, self._emf)

    def _after(self, config: Config, clients: Clients, report: PassReport, *, leader: bool) -> None:
        """What follows a pass: its announcement, retries and refreshes, and (the leader
        only, with coordination) prune and publishing the include."""
        self._announce(config, report)
        finished = self.liveness.completed_at = time.monotonic()
        failed = [r for r in report.images if r.action is Action.FAILED]
        for result in failed:  # due again at the retry, whenever their refresh
            self._checked.pop(result.target, None)
        if failed:
            self._retry_failed(config)
        else:
            self._failed_passes = 0
        if report.retry_in is not None and not self._stop.is_set():
            self.request_pass(delay=report.retry_in)
        refreshes = [e.refresh for e in config.images if e.refresh is not None]
        if refreshes and not self._stop.is_set():
            self.request_pass(delay=min(refreshes))  # images with a short refresh
        prune = config.model.prune
        interval = config.model.daemon.interval_seconds
        last = self._last_prune
        due = last is None or finished - last >= interval * DUE_TOLERANCE  # not on refreshes
        if not leader:
            return
        if prune and prune.enabled and due and not report.failed and not self._stop.is_set():
            self._last_prune = finished
            self._prune(config, clients)
        publishing = config.model.daemon.publish_buildspec
        if publishing and report.count(Action.COPIED) and not self._stop.is_set():
            try:
                pulls, warnings = collect_pulls(config, clients)
            except MirrorError as exc:  # the last good include stays published
                log.error("buildspec_not_published", error=str(exc), hint=exc.hint)
                return
            for warning in warnings:
                log.warning("buildspec_left_out", detail=warning)
            registry = clients.target_registry
            replicas = replica_registries(config, registry)
            # Too large, refused, or on_demand without a queue: the last good one stays.
            try:
                text = render(publishing.format, config, registry, pulls, replicas)
                where = publish(text, publishing.output, publishing.format)
            except MirrorError as exc:
                log.error("buildspec_not_published", error=str(exc), hint=exc.hint)
                return
            log.info("buildspec_published", destination=where, images=len(pulls))

    def _prune(self, config: Config, clients: Clients) -> None:
        """After a pass without failures only: a failed pass may not have resolved every
        tag the config selects, and prune must never act on a partial picture."""
        try:
            pruned = run_prune(config, clients, apply=True)
        except MirrorError as exc:
            log.error("prune_aborted", error=str(exc))
            self.metrics.prune_failures.inc()
            return
        for decision in pruned.to_delete:
            log.info(
                "prune_deleted" if decision.result == "deleted" else "prune_failed",
                repository=decision.repository,
                digest=decision.digest,
                tags=decision.tags,
                reason=decision.reason,
                result=decision.result,
            )
        self.metrics.pruned.inc(pruned.deleted)
        self.metrics.prune_failures.inc(len(pruned.failed))
        log.info("prune_done", deleted=pruned.deleted, kept=pruned.kept, failed=len(pruned.failed))

    # --- main loop -------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon_exit_now", signal=signum)
            logging_flush()
            os._exit(0)
        log.info("daemon_stopping", signal=signum, grace_seconds=self._grace())
        self._stop.set()
        self._wake.set()

    def _grace(self) -> float:
        return self._config.model.daemon.grace_seconds

    def _tick(self) -> None:
        now = time.monotonic()
        self.liveness.ticked_at = now
        if self._every is not None and now >= self._next_every:
            self._next_every = now + self._every
            self.request_pass()
        if now - self._beat_at >= HEARTBEAT_SECONDS and self.healthy():
            self._beat_at = now
            emit(self._config.model.metrics, [heartbeat(self._emf)])

    def run(self) -> int:
        bind_run(self._run_id)
        settings = self._config.model.daemon
        server = _health_server(self, settings.health_address, settings.health_port)
        server.start()
        state = _announce(settings.health_address, settings.health_port)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._plan(settings)
        log.info("daemon_started", health_port=settings.health_port, shard=list(self._shard))
        while not self._stop.is_set():
            self._tick()
            self._jobs.run_pending()
            busy = self._pass is not None and self._pass.is_alive()
            if self._due_at is not None and self._due_at <= time.monotonic() and not busy:
                self._due_at = None
                self._pass = threading.Thread(target=self._run_pass, name="pass", daemon=True)
                self._pass.start()
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
        if self._pass is not None:
            self._pass.join(self._grace())
            current = self._current
            if self._pass.is_alive():
                log.warning("daemon_abandoned_work", grace_seconds=self._grace())
                if current is not None:  # what it did, and what it cut short, still told
                    self._announce(self._config, current.abandon())
                logging_flush()
                os._exit(0)  # in-flight uploads are cut; their tags were never written
        server.stop()
        if self._coordination is not None:  # leases given up: another task takes over now
            self._coordination.close()
        if state is not None:
            with contextlib.suppress(OSError):
                os.unlink(state)
        log.info("daemon_stopped")
        return 0


def logging_flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()


def _announce(address: str, port: int) -> str | None:
    """Where `mirror health` asks this daemon (mirror.service.healthcheck); without the file it
    still works, only slower."""
    try:
        return write_state(address, port)
    except OSError as exc:
        log.warning("health_state_not_written", error=str(exc), hint=f"set {STATE_ENV}")
        return None


def _health_server(daemon: Daemon, address: str, port: int) -> HealthServer:
    def healthz() -> Page:
        health = daemon.health(detailed=is_loopback(address))  # liveness is judged once
        status = 200 if health["status"] == "ok" else 503
        return Page(status, "application/json", json.dumps(health).encode())

    def metrics() -> Page:
        return Page(200, "text/plain; version=0.0.4", daemon.metrics.render())

    return HealthServer(address, port, {"/healthz": healthz, "/metrics": metrics})
