"""`mirror iam-policy` and `mirror prune`: what a config needs of AWS, and what it no
longer needs in ECR."""

from __future__ import annotations

import argparse
import json
import sys

from mirror.aws.iam import consumer_policy, destination_policies, needs_account, policy_document
from mirror.config import Config
from mirror.console.exits import EXIT_FAILED, EXIT_OK
from mirror.engine.report import write_report
from mirror.engine.wiring import Clients, caller_account
from mirror.errors import ConfigError
from mirror.files import say
from mirror.prune import run_prune

__all__ = ["iam_policy", "prune"]


def iam_policy(config: Config, args: argparse.Namespace) -> int:
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


def prune(config: Config, args: argparse.Namespace) -> int:
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
