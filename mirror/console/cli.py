"""The `mirror` command: parse flags, run one command, turn errors into exit codes.

Exit codes (README.md): 0 everything requested is in place; 1 some images failed (the
others were still synced); 2 the config or the command line is wrong (nothing touched).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import json
import os
import signal
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from mirror import __version__
from mirror.aws.iam import consumer_policy, destination_policies, needs_account, policy_document
from mirror.config import (
    Config,
    check_config,
    load_config,
    resolve_config_source,
    with_one_image,
)
from mirror.config.model import DaemonSettings, EnvCredentials, SecretCredentials
from mirror.config.source import is_remote
from mirror.console.log import scrub_text, setup_logging
from mirror.durations import parse_duration
from mirror.engine import progress
from mirror.engine.credentials import resolve_credentials
from mirror.engine.naming import target_reference
from mirror.engine.ratelimit import probe_rate_limits
from mirror.engine.report import Action, ImageResult, PassReport, check_report_path, write_report
from mirror.engine.sync import DEFAULT_MAX_WAIT_SECONDS, Pass, Preview, SyncOptions, preview_rules
from mirror.engine.wiring import Clients, caller_account, target_registry_name
from mirror.errors import ConfigError, MirrorError, printable
from mirror.files import say
from mirror.include.buildspec import (
    collect_pulls,
    only_used,
    render,
    render_commands,
    replica_registries,
)
from mirror.include.dockerfile import base_images
from mirror.include.lock import build_lock, check_lock_hosts, pulls_from_lock, read_lock
from mirror.include.publish import merge_commands, publish
from mirror.prune import restore_after_pass, run_prune
from mirror.service.daemon import Daemon
from mirror.service.emf import resolve_emf
from mirror.service.healthcheck import ask
from mirror.service.pass_events import announce_pass
from mirror.service.runs import bind_run, new_run_id

__all__ = ["main"]

if TYPE_CHECKING:
    from mirror.console.live import LiveProgress

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FAILURES_SUMMARISED = 10
DEFAULT_GRACE_SECONDS = 25.0
STOP_POLL_SECONDS = 0.2


EXIT_CODES = """exit codes:
  0  everything requested is in place (or deferred for quota, with --max-wait)
  1  some images (or the environment) failed; the others were done
  2  the config or the command line is wrong; nothing was touched"""

# name: (one line for `mirror --help`, what it does, an example)
COMMANDS = {
    "validate": (
        "check the config and print the resolved image list",
        "Check the config as strictly as sync would (credential variables, duplicates, "
        "unused registries, the Region) and print what every entry means. Touches nothing.",
        "mirror validate --config mirror.yaml",
    ),
    "sync": (
        "copy every image that changed upstream",
        "Copy every configured image whose upstream digest differs from the target's. "
        "Unchanged images cost no upstream pull (a HEAD).",
        "mirror sync --config mirror.yaml --report report.json",
    ),
    "copy": (
        "copy one image now, with the config's target, registries and credentials",
        "Copy SRC (or SRC's --tag tags) now, as sync would copy it from the config's list: "
        "digest kept, every blob verified, tags pushed last. The config's own images are "
        "left alone.",
        "mirror copy quay.io/prometheus/node-exporter --tag v1.8.2 --report copy.json",
    ),
    "plan": (
        "show what sync would copy and what it costs upstream, writing nothing",
        "What a sync would copy, and the upstream manifest GETs (pull quota) it would spend.",
        "mirror plan --config mirror.yaml",
    ),
    "daemon": (
        "sync on the config's schedule, with /healthz and /metrics (ECS service)",
        "Run sync at start and on the daemon: schedule, serving /healthz (liveness) and "
        "/metrics; SIGTERM drains within daemon.grace_seconds.",
        "mirror daemon --config s3://ops-bucket/mirror/mirror.yaml",
    ),
    "buildspec": (
        "emit the CodeBuild include that pulls the mirrored images by digest and tags them",
        "The CodeBuild include: pull each mirrored image by digest and tag it with the name "
        "the Dockerfiles use, so unchanged FROM lines resolve.",
        "mirror buildspec --config mirror.yaml --merge buildspec.yml",
    ),
    "lock": (
        "write every configured reference's mirror reference and digest (JSON)",
        "Pin every configured reference to its mirror digest, for reproducible builds "
        "(buildspec --lock).",
        "mirror lock --config mirror.yaml --output mirror.include.lock.json",
    ),
    "iam-policy": (
        "print the least-privilege IAM policy (JSON) this config needs",
        "The IAM policy the task running this config needs, and no more.",
        "mirror iam-policy --config mirror.yaml > policy.json",
    ),
    "health": (
        "exit 0 if the local daemon reports healthy (an ECS container health check)",
        "Ask the local daemon's /healthz: exit 0 when it is live, 1 when not.",
        "mirror health --port 8080",
    ),
    "prune": (
        "plan (and with --apply, delete) mirrored images the config no longer selects "
        "and no workload uses",
        "Images mirror owns that the config no longer selects and no workload uses; "
        "--apply deletes them.",
        "mirror prune --config mirror.yaml --keep-days 30",
    ),
    "ratelimit": (
        "show each upstream's pull quota (limit, remaining, window), spending none",
        "Each upstream's pull quota per credential, read from HEAD answers: spends no pull.",
        "mirror ratelimit --config mirror.yaml",
    ),
}
HEALTH_EXIT_CODES = """exit codes:
  0  the daemon answered and is live
  1  it is not live, or nothing answered"""


def _common(*, top: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command's name. After it,
    defaults are suppressed, so `mirror --config x.yaml sync` keeps x.yaml."""
    common = argparse.ArgumentParser(add_help=False)
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    common.add_argument(
        "--config",
        help="a file, s3://BUCKET/KEY or ssm:/PARAMETER (default: $MIRROR_CONFIG, "
        "else config/mirror.yaml)",
        **default,
    )
    common.add_argument(
        "--log-format",
        choices=["console", "json"],
        help="console (default) or json (default for the daemon: one object a line on stdout)",
        **default,
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="debug logging, and a line per request",
        **({"default": 0} if top else default),
    )
    common.add_argument(
        "--log-wire",
        action="store_true",
        help="also the HTTP and AWS libraries' wire logs (bodies; secrets stay redacted)",
        **({"default": False} if top else default),
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(top=False)
    parser = argparse.ArgumentParser(
        prog="mirror",
        parents=[_common(top=True)],
        description=textwrap.fill(
            "Mirror upstream container images into a private registry (ECR or any OCI "
            "registry), spending as little upstream pull quota as the protocol allows.",
            78,
        ),
        epilog="run `mirror COMMAND --help` for a command's options and an example\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str) -> argparse.ArgumentParser:
        summary, description, example = COMMANDS[name]
        codes = HEALTH_EXIT_CODES if name == "health" else EXIT_CODES
        return commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=textwrap.fill(description, 78),
            epilog=f"example:\n  {example}\n\n{codes}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    validate = command("validate")
    validate.add_argument(
        "--check-credentials",
        action="store_true",
        help="also read every Secrets Manager secret the config names (needs AWS access)",
    )
    validate.add_argument(
        "--resolve",
        action="store_true",
        help="also list each rule's upstream tags and print the tags it picks (a tag list "
        "spends no pull; the target is not asked)",
    )
    copy = command("copy")
    copy.add_argument(
        "source",
        metavar="SRC",
        help="an image reference: nginx:1.27, ghcr.io/org/app@sha256:..., or a name with --tag",
    )
    copy.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="copy this tag of SRC (repeatable); SRC then names no tag",
    )
    for name in ("copy", "sync", "plan", "daemon"):
        sub = command(name) if name != "copy" else copy
        if name != "copy":
            sub.add_argument(
                "--shard",
                type=_shard,
                default=(0, 1),
                metavar="I/N",
                help="handle only the I-th of N deterministic shares of the images (0 <= I < N)",
            )
        if name != "daemon":
            sub.add_argument("--report", type=Path, help="write a JSON report to this path")
        if name in ("sync", "copy"):
            sub.add_argument(
                "--grace",
                type=_duration,
                default=DEFAULT_GRACE_SECONDS,
                metavar="DURATION",
                help="after SIGTERM or Ctrl-C, how long images already copying may take to "
                "finish (default 25s); then the report is written and mirror exits 1",
            )
            sub.add_argument(
                "--progress",
                choices=["auto", "always", "never"],
                default="auto",
                help="a live display of bytes, MiB/s, time left and quota waits on stderr: "
                "auto (default) draws it on a terminal only",
            )
        if name != "plan":
            sub.add_argument(
                "--max-wait",
                type=_duration,
                default=DEFAULT_MAX_WAIT_SECONDS,
                metavar="DURATION",
                help="longest this pass waits for upstream quota (30s, 10m, 6h; default 10m); "
                "images still waiting are reported as deferred",
            )
    buildspec = command("buildspec")
    buildspec.add_argument(
        "--format",
        choices=["buildspec", "script", "build-context"],
        default="buildspec",
        help="a buildspec 0.2 fragment (default), a bash script, or --build-context flags",
    )
    buildspec.add_argument(
        "--dockerfile",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="only the images these Dockerfiles use (repeatable)",
    )
    buildspec.add_argument(
        "--merge",
        type=Path,
        metavar="BUILDSPEC",
        help="insert the commands at the start of pre_build in this buildspec (in place "
        "unless --output is given); a second merge replaces the first",
    )
    buildspec.add_argument(
        "--lock",
        type=Path,
        metavar="LOCKFILE",
        help="pin to the digests in this `mirror lock` file instead of asking the target",
    )
    buildspec.add_argument(
        "--output",
        metavar="DEST",
        help="a file, s3://BUCKET/KEY or ssm:/PARAMETER (default: stdout)",
    )
    lock = command("lock")
    lock.add_argument(
        "--output",
        metavar="DEST",
        help="a file, s3://BUCKET/KEY or ssm:/PARAMETER (default: stdout)",
    )
    iam = command("iam-policy")
    iam.add_argument(
        "--consumer",
        action="store_true",
        help="instead, what a build role in a member account needs to pull the mirror",
    )
    iam.add_argument(
        "--destination",
        action="store_true",
        help="instead, the registry policy each cross-account replica's account applies",
    )
    iam.add_argument(
        "--account",
        metavar="ID",
        help="the target's AWS account, when target.registry does not say it "
        "(default: ask STS with the current credentials)",
    )
    health = command("health")
    health.add_argument(
        "--port", type=int, help="default: daemon.health_port of a local config, else 8080"
    )
    prune = command("prune")
    prune.add_argument("--apply", action="store_true", help="delete; without it nothing changes")
    prune.add_argument(
        "--keep-days", type=int, metavar="N", help="spare images pushed in the last N days"
    )
    prune.add_argument("--report", type=Path, help="write the plan and results as JSON")
    command("ratelimit")
    return parser


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"invalid shard {text!r}: write I/N with 0 <= I < N")
    return int(index), int(count)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _credential_problems(config: Config, *, secrets: bool) -> list[str]:
    """What sync would refuse before touching anything: unset credential variables, and
    with `secrets`, secrets that cannot be read."""
    model = config.model
    specs: list[tuple[str, EnvCredentials | SecretCredentials]] = [
        (f"registries.{host}.credentials", spec)
        for host, settings in model.registries.items()
        for spec in settings.credential_list
    ]
    if model.target.credentials is not None:
        specs.append(("target.credentials", model.target.credentials))
    problems = []
    for where, spec in specs:
        if isinstance(spec, SecretCredentials) and not secrets:
            continue
        try:
            resolve_credentials(spec, where)
        except MirrorError as exc:
            problems.append(str(exc))
    return problems


def _validate(source: str, args: argparse.Namespace) -> int:
    """Every problem the config has, all at once: the schema's, then (when it fits the
    schema) AWS's rules, duplicates, and credentials sync would refuse."""
    config, problems = check_config(source)
    if config is not None:
        problems += _credential_problems(config, secrets=args.check_credentials)
    if config is None or problems:
        if args.log_format == "json":
            say(json.dumps({"config": source, "valid": False, "errors": problems}, indent=2))
        else:
            for warning in config.warnings if config is not None else ():
                print(f"mirror: warning: {warning}", file=sys.stderr)
            for problem in problems:
                _fail(problem)
        return EXIT_USAGE
    registry = target_registry_name(config)
    prefix = config.model.target.repository_prefix
    picks = _resolve(config) if args.resolve else {}
    images = []
    for entry in config.images:
        target = target_reference(entry.source.with_tag("TAG"), registry, prefix)
        platforms = str(entry.platforms) if entry.platforms else "all platforms"
        destination = (
            target.name
            if entry.rule or entry.tags
            else str(target_reference(entry.source, registry, prefix))
        )
        image: dict[str, Any] = {
            "entry": entry.describe(),
            "target": destination,
            "platforms": platforms,
        }
        preview = picks.get(entry.line)
        if preview is not None:
            image["tags"] = preview.tags
            image["floating_left_out"] = preview.unmirrored_floating
            if preview.error:
                image["error"] = preview.error
        images.append(image)
    advice = _advice(config)
    unresolved = any("error" in image for image in images)
    if args.log_format == "json":
        say(
            json.dumps(
                {
                    "config": config.source,
                    "valid": True,
                    "errors": [],
                    "warnings": list(config.warnings),
                    "advice": advice,
                    "images": images,
                },
                indent=2,
            )
        )
        return EXIT_FAILED if unresolved else EXIT_OK
    for warning in config.warnings:
        print(f"mirror: warning: {warning}", file=sys.stderr)
    say(f"{config.source}: valid, {len(config.images)} image entries")
    for image in images:
        say(f"  {image['entry']} -> {image['target']}  [{image['platforms']}]")
        if "error" in image:
            say(f"      cannot list its tags: {image['error']}")
        elif "tags" in image:
            say(f"      picks {len(image['tags'])}: {', '.join(image['tags'])}")
            if image["floating_left_out"]:
                say(
                    f"      not picked, though Dockerfiles often name them: "
                    f"{', '.join(image['floating_left_out'])} (add floating: true)"
                )
    for line in advice:
        say(f"advice: {line}")
    return EXIT_FAILED if unresolved else EXIT_OK


def _resolve(config: Config) -> dict[int, Preview]:
    """`--resolve`: each rule entry's picks, by the entry's line (upstream clients only)."""
    clients = Clients(config, upstream_only=True)
    try:
        return {preview.entry.line: preview for preview in preview_rules(config, clients)}
    finally:
        clients.close()


def _advice(config: Config) -> list[str]:
    """What would make this config cheaper to run, known from the config alone."""
    if config.model.target.kind != "ecr" or len(config.images) < 2:
        return []
    return [
        "images in several repositories share layers: ECR mounts a layer another repository "
        "holds only with the registry setting BLOB_MOUNTING enabled (`aws ecr "
        "put-account-setting --name BLOB_MOUNTING --value ENABLED`; same encryption only); "
        "each sync reports whether it is on"
    ]


def _line(result: ImageResult) -> str:
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


def _summary(report: PassReport) -> str:
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


def _buildspec(config: Config, args: argparse.Namespace) -> int:
    if args.merge and args.format != "buildspec":
        raise ConfigError("--merge goes with --format buildspec")
    missing = [str(p) for p in args.dockerfile if not p.is_file()]
    if missing:
        raise ConfigError(f"--dockerfile: no such file: {', '.join(missing)}")
    if args.lock is not None:  # pinned by the lock: no registry request at all
        lock = read_lock(args.lock)
        check_lock_hosts(lock, config, args.lock)
        pulls, warnings = pulls_from_lock(lock)
        registry = str(lock["registry"])
        replicas = dict(lock.get("replicas") or {})
    else:
        clients = Clients(config)
        try:
            pulls, warnings = collect_pulls(config, clients)
        finally:
            clients.close()
        registry = clients.target_registry
        replicas = replica_registries(config, registry)
    if args.dockerfile:
        pulls, unused = only_used(pulls, base_images(args.dockerfile))
        warnings += unused
    if args.merge:
        text, merge_warnings = merge_commands(
            args.merge, render_commands(config, registry, pulls, replicas)
        )
        warnings += merge_warnings
    else:
        text = render(args.format, config, registry, pulls, replicas)
    for warning in warnings:
        print(f"mirror: warning: {warning}", file=sys.stderr)
    destination = args.output or (str(args.merge) if args.merge else None)
    where = publish(text, destination, None if args.merge else args.format)
    if where != "stdout":
        print(f"mirror: {len(pulls)} images written to {where}", file=sys.stderr)
    return EXIT_OK


def _lock(config: Config, args: argparse.Namespace) -> int:
    clients = Clients(config)
    try:
        lock, problems = build_lock(config, clients)
    finally:
        clients.close()
    for problem in problems:
        print(f"mirror: {problem}", file=sys.stderr)
    if problems:
        print("mirror: the lock would be incomplete; nothing was written", file=sys.stderr)
        return EXIT_FAILED
    where = publish(json.dumps(lock, indent=2) + "\n", args.output)
    if where != "stdout":
        print(f"mirror: {len(lock['images'])} images locked in {where}", file=sys.stderr)
    return EXIT_OK


def _iam_policy(config: Config, args: argparse.Namespace) -> int:
    account = args.account
    if account is None and needs_account(config):
        account = caller_account(config.model.target.region)
    if args.consumer:
        say(json.dumps(consumer_policy(config, account), indent=2))
        return EXIT_OK
    if args.destination:
        say(json.dumps(destination_policies(config, account), indent=2))
        return EXIT_OK
    warnings: list[str] = []
    document = policy_document(config, account, warnings)
    for warning in warnings:
        print(f"mirror: warning: {warning}", file=sys.stderr)
    if not document["Statement"]:
        print("mirror: this config needs no AWS permissions", file=sys.stderr)
        return EXIT_OK
    say(json.dumps(document, indent=2))
    return EXIT_OK


def _ratelimit(config: Config, args: argparse.Namespace) -> int:
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


def _run(config: Config, args: argparse.Namespace) -> int:
    human = args.log_format in (None, "console")
    # A plan copies nothing: its figures would read as a sync's, and its heartbeat would
    # hide a schedule that stopped syncing.
    emf = resolve_emf(config.model.metrics) if args.command == "sync" else None
    live = _live_progress(args) if human else None

    def on_result(result: ImageResult) -> None:
        say(_line(result))
        if live is not None:
            live.image_done(result.source, str(result.action))

    stop = threading.Event()
    clients = Clients(config)
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
            with _stopped_by_signals(stop):
                report, abandoned = _within_grace(
                    the_pass, stop, getattr(args, "grace", DEFAULT_GRACE_SECONDS)
                )
        if not abandoned:
            restore_after_pass(config, clients, report)
    finally:
        if not abandoned:  # else the pass's threads still use them, until the exit
            clients.close()
    if human:
        say(_summary(report))
    announce_pass(report, config.model.metrics, emf)
    if args.report:
        write_report(report, args.report)
    code = EXIT_FAILED if report.failed else EXIT_OK
    if abandoned:  # what was cut short cannot be joined: leave without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _within_grace(the_pass: Pass, stop: threading.Event, grace: float) -> tuple[PassReport, bool]:
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
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
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


def _live_progress(args: argparse.Namespace) -> LiveProgress | None:
    """The live display: on a terminal by default (stderr), never in a pipe or a file."""
    wanted = getattr(args, "progress", "never")
    if wanted == "never" or (wanted == "auto" and not sys.stderr.isatty()):
        return None
    from rich.console import Console  # only for a display: `mirror health` stays quick

    from mirror.console.live import LiveProgress

    # force_terminal=False would mean "never a terminal" to rich: None lets it look.
    console = Console(stderr=True, force_terminal=True if wanted == "always" else None)
    return LiveProgress(console, redirect_stdout=sys.stdout.isatty())


def _health(args: argparse.Namespace) -> int:
    healthy, detail = ask("127.0.0.1", _health_port(args))
    say(detail.strip())
    return EXIT_OK if healthy else EXIT_FAILED


def _health_port(args: argparse.Namespace) -> int:
    """--port, else a local config's daemon.health_port. A remote config is not fetched:
    a health check every 30 s must not depend on S3 or cost a request."""
    if args.port is not None:
        return int(args.port)
    source = resolve_config_source(args.config)
    if not is_remote(source):
        try:
            return load_config(source).model.daemon.health_port
        except ConfigError:
            pass
    return DaemonSettings().health_port


def _prune(config: Config, args: argparse.Namespace) -> int:
    if config.model.target.kind != "ecr":
        raise ConfigError("mirror prune works through the ECR API: it needs target kind: ecr")
    if args.keep_days is not None and args.keep_days < 0:
        raise ConfigError("--keep-days must be 0 or more")
    clients = Clients(config)
    try:
        report = run_prune(config, clients, apply=args.apply, keep_days=args.keep_days)
    finally:
        clients.close()
    for decision in report.decisions:
        action = "delete" if decision.delete else "keep"
        tags = f" [{', '.join(decision.tags)}]" if decision.tags else ""
        result = f" -> {decision.result}" if decision.result else ""
        say(
            f"{action:<6} {decision.repository}@{decision.digest[:19]}{tags}  "
            f"{decision.reason}{result}"
        )
    doing = "deleted" if args.apply else "to delete (add --apply to delete them)"
    count = report.deleted if args.apply else len(report.to_delete)
    say(
        f"prune: {count} {doing}, {report.kept} kept"
        + (f", {len(report.failed)} failed" if report.failed else "")
    )
    if args.report:
        write_report(report, args.report)
    return EXIT_FAILED if report.failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    daemon = args.command == "daemon"
    setup_logging(
        args.log_format or ("json" if daemon else "console"), args.verbose, wire=args.log_wire
    )
    bind_run(new_run_id())
    try:
        return _dispatch(args)
    except ConfigError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except MirrorError as exc:  # the environment refused before any image started
        _fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or socket the command needed
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    except Exception as exc:  # a bug: one sentence, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in mirror; run with -v to "
            "see where, and report it)"
        )
        return EXIT_FAILED


def _fail(message: str) -> None:
    """`mirror: ` and the message on stderr, each of its lines on a line of its own."""
    for line in scrub_text(message).splitlines() or [""]:
        print(f"mirror: {printable(line, limit=2000)}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "health":
        return _health(args)
    if args.command == "daemon":
        return Daemon(
            resolve_config_source(args.config), shard=args.shard, max_wait=args.max_wait
        ).run()
    report = getattr(args, "report", None)
    if report is not None:
        check_report_path(report)
    if args.command == "validate":
        return _validate(resolve_config_source(args.config), args)
    config = load_config(resolve_config_source(args.config))
    if args.command == "copy":
        config = with_one_image(config, args.source, tuple(args.tag))
    if args.command != "validate":
        for warning in config.warnings:
            log.warning("config_warning", detail=warning)
    handlers = {
        "ratelimit": lambda: _ratelimit(config, args),
        "iam-policy": lambda: _iam_policy(config, args),
        "buildspec": lambda: _buildspec(config, args),
        "prune": lambda: _prune(config, args),
        "lock": lambda: _lock(config, args),
    }
    handler = handlers.get(args.command)
    return handler() if handler is not None else _run(config, args)


if __name__ == "__main__":
    sys.exit(main())
