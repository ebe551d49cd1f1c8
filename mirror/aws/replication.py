"""ECR replication of everything under repository_prefix to the configured Regions.

mirror owns one rule of the registry's replication configuration: the one whose filter
is a prefix match on repository_prefix. Rules that others own are kept as they are.
Replication copies manifests byte for byte, so every digest a lock or an include pins
is the same in every replica. Replicas in this account get a REPLICATION creation
template with the same settings as the primary's repositories; a destination in another
account needs that account's registry policy (`mirror iam-policy --destination`).
"""

from __future__ import annotations

from typing import Any

import structlog

from mirror.aws.ecr import AwsError, Refusals, call_aws
from mirror.aws.partitions import partition
from mirror.aws.templates import creation_template, ensure_template
from mirror.config.model import ReplicaDestination, RepositorySettings

__all__ = ["Replication", "merged_rules", "mirror_rule"]

log = structlog.get_logger(__name__)


def mirror_rule(
    prefix: str, destinations: list[ReplicaDestination], account: str
) -> dict[str, Any]:
    """mirror's rule: a prefix match on `<prefix>/`, so another team's `<prefix>ball/...`
    repositories are not replicated with it."""
    return {
        "destinations": [
            {"region": d.region, "registryId": d.account or account} for d in destinations
        ],
        "repositoryFilters": [{"filter": f"{prefix}/", "filterType": "PREFIX_MATCH"}],
    }


def merged_rules(current: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule another owner has, then mirror's (identified by its filter, or by the
    filter without its `/` that earlier versions wrote)."""
    ours = rule["repositoryFilters"]
    earlier = [{**f, "filter": f["filter"].rstrip("/")} for f in ours]
    others = [r for r in current if r.get("repositoryFilters") not in (ours, earlier)]
    return [*others, rule]


class Replication:
    def __init__(
        self,
        ecr: Any,
        regional_client: Any,
        settings: RepositorySettings,
        lifecycle: dict[str, Any] | None,
        prefix: str,
        destinations: list[ReplicaDestination],
        account: str,
        refusals: Refusals,
    ) -> None:
        """`regional_client(region)` is an ECR client in that Region, for the templates."""
        self._refusals = refusals
        self._ecr = ecr
        self._regional = regional_client
        self._settings = settings
        self._lifecycle = lifecycle
        self._prefix = prefix.strip("/")
        self._destinations = destinations
        self._account = account

    def ensure(self) -> None:
        """The rule and the replicas' templates; what ECR refuses is recorded (the
        primary still gets every copy), never raised."""
        try:
            self._ensure_rule()
        except AwsError as exc:
            self._refusals.record("replication", "replicate_to", exc)
        template = creation_template(
            self._settings,
            self._lifecycle,
            self._prefix,
            "REPLICATION",
            "Settings for replicas of mirror's repositories",
            partition(self._ecr.meta.region_name),
        )
        for destination in self._destinations:
            if destination.account not in (None, self._account):
                log.info(
                    "replication_template_elsewhere",
                    account=destination.account,
                    region=destination.region,
                    hint="that account's owner applies the registry policy of "
                    "`mirror iam-policy --destination` and its own REPLICATION template",
                )
                continue
            try:
                ensure_template(self._regional(destination.region), template)
            except AwsError as exc:
                self._refusals.record(
                    f"{self._prefix} in {destination.region}", "creation_template", exc
                )

    def _ensure_rule(self) -> None:
        found = call_aws(self._ecr, "describe_registry")
        current = (found.get("replicationConfiguration") or {}).get("rules") or []
        rule = mirror_rule(self._prefix, self._destinations, self._account)
        wanted = merged_rules(current, rule)
        if wanted != current:
            call_aws(
                self._ecr,
                "put_replication_configuration",
                replicationConfiguration={"rules": wanted},
            )
            log.info("replication_configured", prefix=self._prefix, rule=rule)
