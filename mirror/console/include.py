"""`mirror buildspec` and `mirror lock`: the CodeBuild include, from the target or a lock."""

from __future__ import annotations

import argparse
import json
import sys

from mirror.config import Config
from mirror.console.exits import EXIT_FAILED, EXIT_OK
from mirror.engine.wiring import Clients
from mirror.errors import ConfigError
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

__all__ = ["buildspec", "lock"]


def buildspec(config: Config, args: argparse.Namespace) -> int:
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
        pulls, unused = only_used(config, pulls, base_images(args.dockerfile))
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


def lock(config: Config, args: argparse.Namespace) -> int:
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
