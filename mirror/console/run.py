"""The commands that move images: `sync`, `plan` and `copy` (a pass, its per-image lines,
the live display, a graceful stop), and `ratelimit`, which asks the same upstreams."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from mirror.config import Config
from mirror.console.exits import EXIT_FAILED, EXIT_OK
from mirror.console.startup import allow_rich
from mirror.engine import progress
from mirror.engine.ratelimit import probe_rate_limits
from mirror.engine.report import Action, ImageResult, PassReport, write_report
from mirror.engine.sync import DEFAULT_MAX_WAIT_SECONDS, Pass, SyncOptions
from mirror.engine.wiring import Clients, open_coordinator
from mirror.files import say
from mirror.prune import restore_after_pass
from mirror.service.emf import resolve_emf
from mirror.service.pass_events import announce_pass

if TYPE_CHECKING:
    from mirror.console.live import LiveProgress

__all__ = ["DEFAULT_GRACE_SECONDS", "ratelimit", "run_pass_command", "summary"]

log = structlog.get_logger(__name__)

FAILURES_SUMMARISED = 10
DEFAULT_GRACE_SECONDS = 25.0
STOP_POLL_SECONDS = 0.2


def result_line(result: ImageResult) -> str:
    digest = (result.target_digest or result.upstream_digest or "")[:19]
    text = f"{result.action:<10} {result.source} -> {result.target or '-'}"
    if digest:
        text += f"  {digest}"
    if result.action is Action.COPIED:
        text += (
            f"  {result.blobs_copied} blobs copied, {result.blobs_mounted} mounted, "
            f"{result.blobs_skipped} present, {result.bytes / 2**20:.1f} MiB, "
            f"{result.upstream_manifest_gets} upstream GETs, {result.seconds:.1f}s"
        )
    elif not result.upstream_checked:
        text += "  immutable: not checked upstream"
    elif result.action is Action.WOULD_COPY:
        text += f"  upstream manifest GETs: {result.estimated_upstream_gets}; {result.quota}"
    if result.artifacts_error is not None:
        warning = result.artifacts_error
        text += f"\n           warning: artifacts not copied: {warning.code}: {warning.message}"
    if result.error is not None:
        text += f"\n           {result.error.code}: {result.error.message}"
        if result.error.hint:
            text += f"\n           hint: {result.error.hint}"
    return text


BLOB_MOUNTING_ADVICE = (
    "ECR's BLOB_MOUNTING setting is off: a layer another repository holds is uploaded "
    "again; `aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED` mounts it"
)


def summary(report: PassReport) -> str:
    counts = report.summary()
    shown = ", ".join(f"{counts[str(a)]} {a}" for a in Action if counts[str(a)])
    if report.command == "plan":  # nothing was copied: say what a sync would spend
        needed = [r.estimated_upstream_gets for r in report.images if r.estimated_upstream_gets]
        least = sum(int(n.partition("+")[0]) for n in needed)
        more = " or more (an index's missing children)" if any("+" in n for n in needed) else ""
        text = (
            f"plan: {shown or 'nothing to do'}; a sync would spend {least}{more} upstream "
            f"manifest GETs, {report.seconds:.1f}s"
        )
    else:
        text = (
            f"{report.command}: {shown or 'nothing to do'}; "
            f"{counts['bytes'] / 2**20:.1f} MiB copied, "
            f"{counts['upstream_manifest_gets']} upstream manifest GETs, {report.seconds:.1f}s"
        )
    if counts["blobs_uploaded"] or counts["blobs_mounted"]:
        text += f"; blobs: {counts['blobs_uploaded']} uploaded, {counts['blobs_mounted']} mounted"
    if report.blob_mounting == "DISABLED":
        text += f"\n  {BLOB_MOUNTING_ADVICE}"
    for error in report.errors:
        text += f"\n  {error.code}: {error.message}" + (f" ({error.hint})" if error.hint else "")
    if report.unowned_repositories:
        names = ", ".join(report.unowned_repositories)
        text += (
            f"\n  repositories mirror did not create (images written, settings left alone; "
            f"target.repository.adopt_existing: true manages them): {names}"
        )
    for restored in report.restored:
        text += (
            f"\n  restored from ECR's archive: {restored['repository']}@{restored['digest']} "
            f"({restored['pinned_by']}; pullable again within 20 minutes)"
        )
    for refused in report.settings_refused:
        text += (
            f"\n  {refused.repository}: {refused.setting} refused by ECR (images still "
            f"copied): {refused.message}" + (f"; {refused.hint}" if refused.hint else "")
        )
    failed = [r for r in report.images if r.action is Action.FAILED and r.error is not None]
    for result in failed[:FAILURES_SUMMARISED]:
        assert result.error is not None
        hint = f"; {result.error.hint}" if result.error.hint else ""
        text += f"\n  failed {result.source}: {result.error.code}{hint}"
    if len(failed) > FAILURES_SUMMARISED:
        text += f"\n  ... and {len(failed) - FAILURES_SUMMARISED} more failed (see above)"
    for entry, dropped in report.dropped_tags.items():
        text += f"\n  {entry}: {dropped} upstream tags outside the OCI grammar dropped"
    for usage in report.registries:
        spent = ", ".join(f"{c.credential}: {c.pulls}" for c in usage.credentials)
        text += f"\n  {usage.registry}: pulls {spent}"
        if usage.waited_seconds:
            text += f"; waited {usage.waited_seconds:.0f}s for quota"
        if usage.token_realm_retries:
            text += f"; token service failed {usage.token_realm_retries}x (retried)"
    return text


def run_pass_command(config: Config, args: argparse.Namespace) -> int:
    human = args.log_format in (None, "console")
    # A plan copies nothing: its figures would read as a sync's, and its heartbeat would
    # hide a schedule that stopped syncing.
    emf = resolve_emf(config.model.metrics) if args.command == "sync" else None
    live = live_progress(args) if human else None

    def on_result(result: ImageResult) -> None:
        say(result_line(result))
        if live is not None:
            live.image_done(result.source, str(result.action))

    stop = threading.Event()
    # A plan spends nothing and copies nothing: it has nothing to share.
    coordinator = open_coordinator(config, args.command) if args.command != "plan" else None
    clients = Clients(config, coordinator=coordinator)
    the_pass = Pass(
        config,
        clients,
        SyncOptions(
            dry_run=args.command == "plan",
            max_wait=getattr(args, "max_wait", DEFAULT_MAX_WAIT_SECONDS),
            shard=getattr(args, "shard", (0, 1)),
            stop=stop,
        ),
        on_result=on_result if human else None,
    )
    abandoned = False
    try:
        with contextlib.ExitStack() as showing:
            if live is not None:
                showing.enter_context(live)
                showing.enter_context(progress.showing(live))
            with stopped_by_signals(stop):
                report, abandoned = within_grace(
                    the_pass, stop, getattr(args, "grace", DEFAULT_GRACE_SECONDS)
                )
        if not abandoned and the_pass.leads():
            restore_after_pass(config, clients, report)
    finally:
        if not abandoned:  # else the pass's threads still use them, until the exit
            clients.close()
            if coordinator is not None:  # its leases, leadership included, given up
                coordinator.close()
    if human:
        say(summary(report))
    announce_pass(report, config.model.metrics, emf)
    if args.report:
        write_report(report, args.report)
    code = EXIT_FAILED if report.failed else EXIT_OK
    if abandoned:  # what was cut short cannot be joined: leave without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def within_grace(the_pass: Pass, stop: threading.Event, grace: float) -> tuple[PassReport, bool]:
    """Run the pass on a thread of its own; once a stop is asked for, give the images
    already copying `grace` seconds, then abandon them. (report, abandoned)."""
    outcome: list[PassReport] = []
    crash: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(the_pass.run())
        except BaseException as exc:  # raised again on the main thread
            crash.append(exc)

    worker = threading.Thread(
        target=contextvars.copy_context().run, args=(run,), name="pass", daemon=True
    )
    worker.start()
    stop_by: float | None = None
    while worker.is_alive():
        worker.join(STOP_POLL_SECONDS)
        if stop.is_set() and stop_by is None:
            stop_by = time.monotonic() + grace
        if stop_by is not None and time.monotonic() >= stop_by and worker.is_alive():
            log.warning("sync_abandoned_work", grace_seconds=grace)
            return the_pass.abandon(), True
    if crash:
        raise crash[0]
    return outcome[0], False


@contextlib.contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (what ECS and CI runners send) and Ctrl-C ask the pass to stop: no image
    starts, those copying may finish within --grace. A second signal exits at once."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("sync_exit_now", signal=signum)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        log.info("sync_stopping", signal=signum)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def live_progress(args: argparse.Namespace) -> LiveProgress | None:
    """The live display: on a terminal by default (stderr), never in a pipe or a file."""
    wanted = getattr(args, "progress", "never")
    if wanted == "never" or (wanted == "auto" and not sys.stderr.isatty()):
        return None
    allow_rich()  # kept out of start-up (mirror.console.startup): only a display needs it
    from rich.console import Console

    from mirror.console.live import LiveProgress

    # force_terminal=False would mean "never a terminal" to rich: None lets it look.
    console = Console(stderr=True, force_terminal=True if wanted == "always" else None)
    return LiveProgress(console, redirect_stdout=sys.stdout.isatty())


def ratelimit(config: Config, args: argparse.Namespace) -> int:
    clients = Clients(config)
    try:
        rows = probe_rate_limits(config, clients)
    finally:
        clients.close()
    failed = any(row.error for row in rows)
    if args.log_format == "json":
        say(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return EXIT_FAILED if failed else EXIT_OK
    say(f"{'registry':<24} {'credential':<24} {'limit':>6} {'left':>6} {'window':>8}  source")
    for row in rows:
        if row.error:
            say(f"{row.registry:<24} {row.credential:<24} error: {row.error}")
        elif row.limit is None:
            say(f"{row.registry:<24} {row.credential:<24} no rate-limit headers (not limited)")
        else:
            window = f"{row.window_seconds:.0f}s" if row.window_seconds else "-"
            say(
                f"{row.registry:<24} {row.credential:<24} {row.limit:>6} {row.remaining:>6} "
                f"{window:>8}  {row.source or '-'}"
            )
    return EXIT_FAILED if failed else EXIT_OK
