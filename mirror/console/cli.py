"""The `mirror` command: parse flags, run one command, turn errors into exit codes.

Exit codes (README.md): 0 everything requested is in place; 1 some images failed (the
others were still synced); 2 the config or the command line is wrong (nothing touched).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirror import __version__
from mirror.console.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from mirror.durations import parse_duration
from mirror.errors import ConfigError, MirrorError

__all__ = ["main"]

# The defaults --max-wait and --grace show and take (the engine's SyncOptions has the same
# pass default: a sync from a library call waits as long as one from the command line).
DEFAULT_MAX_WAIT = "10m"
DEFAULT_GRACE = "25s"


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
COMMANDS["status"] = (
    "show the coordination table: leases, the shared quota, each mirror process",
    "What several mirror processes share (coordination.dynamodb_table): who holds which "
    "lease and for how long, each upstream quota's pulls left for all, and each process "
    "with its last pass. Reads the table only.",
    "mirror status --config mirror.yaml",
)
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
                default=DEFAULT_GRACE,
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
                default=DEFAULT_MAX_WAIT,
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
    command("status")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, set up logging where the command logs, run it, and turn what went wrong
    into a sentence and an exit code. Each command imports only what it uses: `validate`
    never loads the HTTP, AWS or logging libraries, `--version` nothing at all."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command != "validate" or args.resolve:  # offline validate logs nothing
        from mirror.console.log import setup_logging
        from mirror.service.runs import bind_run, new_run_id

        daemon = args.command == "daemon"
        setup_logging(
            args.log_format or ("json" if daemon else "console"), args.verbose, wire=args.log_wire
        )
        bind_run(new_run_id())
    try:
        return _dispatch(args)
    except ConfigError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except MirrorError as exc:  # the environment refused before any image started
        fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or socket the command needed
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    except Exception as exc:  # a bug: one sentence, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in mirror; run with -v to "
            "see where, and report it)"
        )
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_source, with_one_image

    source = resolve_config_source(args.config)
    if args.command == "health":
        return _health(args, source)
    if args.command == "daemon":
        from mirror.service.daemon import Daemon

        return Daemon(source, shard=args.shard, max_wait=args.max_wait).run()
    report = getattr(args, "report", None)
    if report is not None:
        from mirror.engine.report import check_report_path

        check_report_path(report)
    if args.command == "validate":
        from mirror.console.validate import validate

        return validate(source, args)
    config = load_config(source)
    if args.command == "copy":
        config = with_one_image(config, args.source, tuple(args.tag))
    if config.warnings:
        import structlog

        for warning in config.warnings:
            structlog.get_logger(__name__).warning("config_warning", detail=warning)
    if args.command in ("buildspec", "lock"):
        from mirror.console import include

        return (
            include.buildspec(config, args)
            if args.command == "buildspec"
            else include.lock(config, args)
        )
    if args.command in ("iam-policy", "prune"):
        from mirror.console import aws

        return (
            aws.iam_policy(config, args)
            if args.command == "iam-policy"
            else aws.prune(config, args)
        )
    from mirror.console import run

    if args.command == "ratelimit":
        return run.ratelimit(config, args)
    if args.command == "status":
        from mirror.console.status import status

        return status(config, args)
    return run.run_pass_command(config, args)


def _health(args: argparse.Namespace, source: str) -> int:
    """`mirror health` with options the container's check does not use (entry.py answers
    that one before anything is imported)."""
    from mirror.files import say
    from mirror.service.healthcheck import ask

    healthy, detail = ask("127.0.0.1", _health_port(args, source))
    say(detail.strip())
    return EXIT_OK if healthy else EXIT_FAILED


def _health_port(args: argparse.Namespace, source: str) -> int:
    """--port, else a local config's daemon.health_port. A remote config is not fetched:
    a health check every 30 s must not depend on S3 or cost a request."""
    from mirror.config import load_config
    from mirror.config.model import DaemonSettings
    from mirror.config.source import is_remote

    if args.port is not None:
        return int(args.port)
    if not is_remote(source):
        try:
            return load_config(source).model.daemon.health_port
        except ConfigError:
            pass
    return DaemonSettings().health_port


if __name__ == "__main__":
    sys.exit(main())
