"""ECR repository creation templates: the settings ECR gives repositories it creates on
mirror's behalf (on a pull-through-cache miss, or as a replica), so they match the ones
mirror creates itself: mutability, encryption, tags, lifecycle and pull access."""

from __future__ import annotations

import json
from typing import Any

import structlog

from mirror.aws.access import merge_policy
from mirror.aws.ecr import call_aws, encryption_configuration, exclusion_filters
from mirror.config.model import RepositorySettings

__all__ = ["creation_template", "ensure_template"]

log = structlog.get_logger(__name__)


def creation_template(
    settings: RepositorySettings,
    lifecycle: dict[str, Any] | None,
    prefix: str,
    applied_for: str,
    description: str,
    partition: str = "aws",
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "prefix": prefix,
        "description": description,
        "appliedFor": [applied_for],
        "imageTagMutability": settings.tag_mutability,
        "encryptionConfiguration": encryption_configuration(settings),
        "resourceTags": [{"Key": k, "Value": v} for k, v in settings.tags.items()],
    }
    if settings.tag_mutability_exclusions:
        template["imageTagMutabilityExclusionFilters"] = exclusion_filters(settings)
    if lifecycle is not None:
        template["lifecyclePolicy"] = json.dumps(lifecycle)
    if settings.pull_access is not None:  # repositories ECR creates are pullable alike
        template["repositoryPolicy"] = json.dumps(
            merge_policy(None, settings.pull_access, partition)
        )
    return template


def ensure_template(ecr: Any, wanted: dict[str, Any]) -> None:
    """Create the template, or update it when any setting differs."""
    prefix = wanted["prefix"]
    found = call_aws(ecr, "describe_repository_creation_templates", prefixes=[prefix])
    existing = found.get("repositoryCreationTemplates") or []
    if not existing:
        call_aws(ecr, "create_repository_creation_template", **wanted)
        log.info(
            "repository_creation_template_created", prefix=prefix, applied_for=wanted["appliedFor"]
        )
        return
    current = existing[0]
    if any(current.get(k) != v for k, v in wanted.items() if k != "description"):
        call_aws(ecr, "update_repository_creation_template", **wanted)
        log.info(
            "repository_creation_template_updated", prefix=prefix, applied_for=wanted["appliedFor"]
        )
