"""Which images workloads use: ECS services, tasks and recent task definitions, Lambda
functions, and a file of extra references.

Any listing that fails raises PruneAborted: an unknown set of workloads must never read
as "nothing is in use".
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.aws.ecr import AwsError, call_aws
from mirror.config.model import PruneSettings
from mirror.config.source import is_remote, read_config_text
from mirror.errors import ConfigError, MirrorError

__all__ = ["PruneAborted", "Use", "collect_uses"]

DESCRIBE_SERVICES_MAX = 10
DESCRIBE_TASKS_MAX = 100


class PruneAborted(MirrorError):
    """What is in use could not be fully listed; nothing was deleted."""

    code = "PRUNE_ABORTED"


@dataclass(frozen=True)
class Use:
    reference: str  # as the workload writes it: a mirror URI or an upstream name
    holder: str  # who keeps it: "ecs service prod/web (web:12)"


def _call(client: Any, operation: str, what: str, **kwargs: Any) -> Any:
    try:
        return call_aws(client, operation, **kwargs)
    except AwsError as exc:
        raise PruneAborted(
            f"cannot list {what}: {exc}; nothing was deleted",
            hint="grant the prune permissions from `mirror iam-policy`, or narrow "
            "prune.clusters / prune.functions",
        ) from None


# (request argument, response key) of the page token: ECS's and Lambda's.
ECS_PAGES = ("nextToken", "nextToken")
LAMBDA_PAGES = ("Marker", "NextMarker")


def _pages(
    client: Any, operation: str, key: str, what: str, style: tuple[str, str], **kwargs: Any
) -> Iterator[Any]:
    argument, answer = style
    token: str | None = None
    while True:
        page = _call(client, operation, what, **kwargs, **({argument: token} if token else {}))
        yield from page.get(key, [])
        token = page.get(answer)
        if not token:
            return


def _ecs_pages(client: Any, operation: str, key: str, what: str, **kwargs: Any) -> Iterator[Any]:
    return _pages(client, operation, key, what, ECS_PAGES, **kwargs)


def _lambda_pages(client: Any, operation: str, key: str, what: str, **kwargs: Any) -> Iterator[Any]:
    return _pages(client, operation, key, what, LAMBDA_PAGES, **kwargs)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class _TaskDefinitions:
    """describe_task_definition, once per ARN."""

    def __init__(self, ecs: Any) -> None:
        self._ecs = ecs
        self._images: dict[str, list[str]] = {}

    def images(self, arn: str) -> list[str]:
        if arn not in self._images:
            found = _call(
                self._ecs, "describe_task_definition", f"task definition {arn}", taskDefinition=arn
            )
            containers = found["taskDefinition"].get("containerDefinitions", [])
            self._images[arn] = [c["image"] for c in containers if c.get("image")]
        return self._images[arn]


def _ecs_uses(ecs: Any, settings: PruneSettings) -> list[Use]:
    definitions = _TaskDefinitions(ecs)
    uses: list[Use] = []
    for cluster_arn in _ecs_pages(ecs, "list_clusters", "clusterArns", "ECS clusters"):
        cluster = _short(cluster_arn)
        if not _matches(cluster, settings.clusters):
            continue
        services = list(
            _ecs_pages(
                ecs,
                "list_services",
                "serviceArns",
                f"services of ECS cluster {cluster}",
                cluster=cluster_arn,
            )
        )
        for start in range(0, len(services), DESCRIBE_SERVICES_MAX):
            batch = services[start : start + DESCRIBE_SERVICES_MAX]
            described = _call(
                ecs,
                "describe_services",
                f"services of ECS cluster {cluster}",
                cluster=cluster_arn,
                services=batch,
            )
            for service in described.get("services", []):
                arns = {d["taskDefinition"] for d in service.get("deployments", [])}
                arns.add(service["taskDefinition"])
                for arn in sorted(arns):
                    holder = f"ECS service {cluster}/{service['serviceName']} ({_short(arn)})"
                    uses += [Use(image, holder) for image in definitions.images(arn)]
        for status in ("RUNNING", "STOPPED"):  # ECS keeps stopped tasks for about an hour
            tasks = list(
                _ecs_pages(
                    ecs,
                    "list_tasks",
                    "taskArns",
                    f"tasks of ECS cluster {cluster}",
                    cluster=cluster_arn,
                    desiredStatus=status,
                )
            )
            for start in range(0, len(tasks), DESCRIBE_TASKS_MAX):
                described = _call(
                    ecs,
                    "describe_tasks",
                    f"tasks of ECS cluster {cluster}",
                    cluster=cluster_arn,
                    tasks=tasks[start : start + DESCRIBE_TASKS_MAX],
                )
                for task in described.get("tasks", []):
                    holder = f"ECS task {cluster}/{_short(task['taskArn'])} ({status.lower()})"
                    uses += [Use(i, holder) for i in definitions.images(task["taskDefinitionArn"])]
                    for container in task.get("containers", []):
                        if container.get("image") and container.get("imageDigest"):
                            name = container["image"].split("@")[0]
                            uses.append(Use(f"{name}@{container['imageDigest']}", holder))
    families = _ecs_pages(
        ecs,
        "list_task_definition_families",
        "families",
        "task definition families",
        status="ACTIVE",
    )
    for family in families:
        if not _matches(family, settings.families):
            continue
        keep = settings.keep_task_definition_revisions
        revisions = [
            arn
            for arn in _ecs_pages(
                ecs,
                "list_task_definitions",
                "taskDefinitionArns",
                f"revisions of task definition family {family}",
                familyPrefix=family,
            )
            if _short(arn).rsplit(":", 1)[0] == family
        ]
        revisions.sort(key=lambda arn: int(arn.rsplit(":", 1)[1]), reverse=True)
        for arn in revisions[:keep]:
            holder = f"task definition {_short(arn)} (newest {keep})"
            uses += [Use(image, holder) for image in definitions.images(arn)]
    return uses


def _lambda_uses(lambda_client: Any, settings: PruneSettings) -> list[Use]:
    uses: list[Use] = []
    for function in _lambda_pages(lambda_client, "list_functions", "Functions", "Lambda functions"):
        name = function["FunctionName"]
        if function.get("PackageType") != "Image" or not _matches(name, settings.functions):
            continue
        versions = [
            v["Version"]
            for v in _lambda_pages(
                lambda_client,
                "list_versions_by_function",
                "Versions",
                f"versions of Lambda function {name}",
                FunctionName=name,
            )
            if v["Version"] != "$LATEST"
        ]
        newest = sorted(versions, key=int)[-settings.keep_function_versions :]
        aliases = _call(
            lambda_client, "list_aliases", f"aliases of Lambda function {name}", FunctionName=name
        ).get("Aliases", [])
        wanted = {"$LATEST": "$LATEST", **{v: f"version {v}" for v in newest}}
        wanted.update({a["FunctionVersion"]: f"alias {a['Name']}" for a in aliases})
        for qualifier, why in sorted(wanted.items()):
            found = _call(
                lambda_client,
                "get_function",
                f"Lambda function {name}:{qualifier}",
                FunctionName=name,
                Qualifier=qualifier,
            )
            code = found.get("Code", {})
            holder = f"Lambda function {name} ({why})"
            uses += [Use(code[k], holder) for k in ("ImageUri", "ResolvedImageUri") if code.get(k)]
    return uses


def _file_uses(path: Path) -> list[Use]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PruneAborted(f"cannot read prune.extra_references {path}: {exc.strerror}") from None
    uses = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            uses.append(Use(text, f"{path.name}:{number}"))
    return uses


# A pinned repository path in an include or a lock: `mirror/docker-hub/library/nginx@sha256:..`
_PINNED_RE = re.compile(
    r"(?<![\w./-])((?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"@(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})(?![a-f0-9])",
    re.ASCII,
)


def _protected_uses(sources: list[str], base_dir: Path, registry: str) -> list[Use]:
    """Every digest that the lock files and published includes in `prune.protect` pin:
    builds that fetch them must keep finding those digests. A lock names its targets with
    their registry; an include names repository paths, in this registry."""
    uses = []
    for source in sources:
        where = source if is_remote(source) else str(base_dir / source)
        try:
            text = read_config_text(where)
        except ConfigError as exc:
            raise PruneAborted(f"cannot read prune.protect {source}: {exc.message}") from None
        try:
            lock = json.loads(text)
        except ValueError:
            lock = None
        if isinstance(lock, dict) and isinstance(lock.get("images"), list):
            targets = [str(i.get("target")) for i in lock["images"] if isinstance(i, dict)]
            uses += [Use(t, f"pinned by {source}") for t in targets]
            continue
        uses += [
            Use(f"{registry}/{m[1]}@{m[2]}", f"pinned by {source}")
            for m in _PINNED_RE.finditer(text)
        ]
    return uses


def collect_uses(
    settings: PruneSettings,
    *,
    ecs: Any,
    lambda_client: Any,
    base_dir: Path,
    registry: str = "",
) -> list[Use]:
    """Every image reference a workload in scope holds, with who holds it; and every
    digest a protected lock or include pins (`registry` is the mirror's, for includes)."""
    uses = _ecs_uses(ecs, settings) + _lambda_uses(lambda_client, settings)
    if settings.extra_references:
        uses += _file_uses(base_dir / settings.extra_references)
    if settings.protect:
        uses += _protected_uses(settings.protect, base_dir, registry)
    return uses
