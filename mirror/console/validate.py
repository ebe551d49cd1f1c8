"""`mirror validate`: every problem a config has, at once; and with --resolve, the tags
each rule picks now (the only part that asks a registry)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from mirror.config import Config, check_config
from mirror.config.model import EnvCredentials, SecretCredentials
from mirror.console.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from mirror.engine.credentials import resolve_credentials
from mirror.engine.naming import target_reference, target_registry_name
from mirror.errors import MirrorError
from mirror.files import say

if TYPE_CHECKING:
    from mirror.engine.sync import Preview

__all__ = ["credential_problems", "validate"]


def credential_problems(config: Config, *, secrets: bool) -> list[str]:
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


def validate(source: str, args: argparse.Namespace) -> int:
    """Every problem the config has, all at once: the schema's, then (when it fits the
    schema) AWS's rules, duplicates, and credentials sync would refuse."""
    config, problems = check_config(source)
    if config is not None:
        problems += credential_problems(config, secrets=args.check_credentials)
    if config is None or problems:
        if args.log_format == "json":
            say(json.dumps({"config": source, "valid": False, "errors": problems}, indent=2))
        else:
            for warning in config.warnings if config is not None else ():
                print(f"mirror: warning: {warning}", file=sys.stderr)
            for problem in problems:
                fail(problem)
        return EXIT_USAGE
    registry = target_registry_name(config)
    prefix = config.model.target.repository_prefix
    picks = resolve_rules(config) if args.resolve else {}
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
    advised = advice(config)
    asked, asked_error = asked_for(config)
    unresolved = any("error" in image for image in images)
    if args.log_format == "json":
        say(
            json.dumps(
                {
                    "config": config.source,
                    "valid": True,
                    "errors": [],
                    "warnings": list(config.warnings),
                    "advice": advised,
                    "images": images,
                    **({"on_demand": asked} if config.model.on_demand else {}),
                    **({"on_demand_error": asked_error} if asked_error else {}),
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
    for line in advised:
        say(f"advice: {line}")
    if asked:
        say(f"on demand: {len(asked)} images builds asked for (adopt them into images:)")
        for item in asked:
            say(f"  - {item['image']}  # {item['asked_by']}")
    if asked_error:
        say(f"on demand: the images builds asked for could not be read: {asked_error}")
    return EXIT_FAILED if unresolved else EXIT_OK


def asked_for(config: Config) -> tuple[list[dict[str, str]], str]:
    """With `on_demand`: the images builds asked for and the daemon added (read from the
    coordination table, the one thing validate asks AWS), and what stopped that."""
    if config.model.on_demand is None:
        return [], ""
    from mirror.coordination.ondemand import OnDemandImages
    from mirror.coordination.table import Table
    from mirror.engine.wiring import config_region, coordination_settings

    settings = coordination_settings(config)
    if settings is None:
        return [], "no coordination table: on_demand keeps what it adds there"
    import boto3

    try:
        client = boto3.session.Session(region_name=config_region(config)).client("dynamodb")
        added = OnDemandImages(Table(client, settings.dynamodb_table)).images()
    except MirrorError as exc:
        return [], exc.message
    return [{"image": a.image, "asked_by": a.project or a.account or a.sender} for a in added], ""


def resolve_rules(config: Config) -> dict[int, Preview]:
    """`--resolve`: each rule entry's picks, by the entry's line (upstream clients only,
    imported only here: validate alone asks no registry)."""
    from mirror.engine.sync import preview_rules
    from mirror.engine.wiring import Clients

    clients = Clients(config, upstream_only=True)
    try:
        return {preview.entry.line: preview for preview in preview_rules(config, clients)}
    finally:
        clients.close()


def advice(config: Config) -> list[str]:
    """What would make this config cheaper to run, known from the config alone."""
    if config.model.target.kind != "ecr" or len(config.images) < 2:
        return []
    return [
        "images in several repositories share layers: ECR mounts a layer another repository "
        "holds only with the registry setting BLOB_MOUNTING enabled (`aws ecr "
        "put-account-setting --name BLOB_MOUNTING --value ENABLED`; same encryption only); "
        "each sync reports whether it is on"
    ]
