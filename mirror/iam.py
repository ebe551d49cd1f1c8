"""`mirror iam-policy`: the least-privilege IAM policy the current config needs.

Actions come from the features the config turns on, each scoped to the narrowest
resource: the mirror's own repositories (`repository/<prefix>/*`), the configured
secrets, the configured KMS key. sts:GetCallerIdentity needs no permission and is not
listed. A test records the AWS calls a sync makes and checks them against this policy.
"""

from __future__ import annotations

import re
from typing import Any

from mirror.config import Config
from mirror.config.model import KmsEncryption, SecretCredentials
from mirror.config.source import remote_resource

__all__ = ["DATA_PLANE_PUSH", "policy_document", "repository_actions"]

# What the registry API (docker push/HEAD) needs on the target repositories.
DATA_PLANE_PUSH = frozenset(
    {
        "ecr:BatchCheckLayerAvailability",  # HEAD a blob
        "ecr:BatchGetImage",  # HEAD/GET a manifest
        "ecr:InitiateLayerUpload",  # POST an upload (or a mount)
        "ecr:UploadLayerPart",  # PUT the bytes
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",  # PUT a manifest
        "ecr:GetDownloadUrlForLayer",  # mount a blob from another mirror repository
    }
)


def repository_actions(config: Config) -> set[str]:
    """Control-plane actions on the mirror's repositories that this config makes mirror call."""
    repository = config.model.target.repository
    actions = {
        "ecr:DescribeImages",  # the images-per-repository quota warning
        "ecr:DescribeRepositories",
        "ecr:CreateRepository",
        "ecr:PutImageTagMutability",
        "ecr:PutImageScanningConfiguration",
    }
    if config.lifecycle_policy is not None:
        actions |= {"ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy"}
    if config.retired_lifecycle_policy is not None:
        actions |= {"ecr:DeleteLifecyclePolicy", "ecr:GetLifecyclePolicy"}
    if repository.tags:
        actions |= {"ecr:TagResource", "ecr:ListTagsForResource"}
    return actions


def _account_and_region(config: Config) -> tuple[str, str]:
    target = config.model.target
    match = re.match(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.", target.registry or "")
    if match:
        return match.group(1), match.group(2)
    return "*", target.region or "*"


def _mirror_repositories(config: Config) -> str:
    """The ARN pattern of every repository under the mirror's prefix."""
    account, region = _account_and_region(config)
    prefix = config.model.target.repository_prefix.strip("/")
    return f"arn:aws:ecr:{region}:{account}:repository/{prefix + '/' if prefix else ''}*"


def policy_document(config: Config) -> dict[str, Any]:
    """The policy; its Statement list is empty when the config needs no AWS permission."""
    statements = _ecr_statements(config) if config.model.target.kind == "ecr" else []
    secrets = sorted(
        spec.secret_arn
        for settings in config.model.registries.values()
        for spec in settings.credential_list
        if isinstance(spec, SecretCredentials)
    )
    statements += _config_statements(config)
    if config.model.prune is not None:
        statements += _prune_statements(config)
    statements += _event_statements(config)
    if secrets:
        statements.append(
            {
                "Sid": "UpstreamCredentials",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": secrets,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


PRUNE_IN_USE_ACTIONS = (
    "ecs:DescribeServices",
    "ecs:DescribeTaskDefinition",
    "ecs:DescribeTasks",
    "ecs:ListClusters",
    "ecs:ListServices",
    "ecs:ListTaskDefinitionFamilies",
    "ecs:ListTaskDefinitions",
    "ecs:ListTasks",
    "lambda:GetFunction",
    "lambda:ListAliases",
    "lambda:ListFunctions",
    "lambda:ListVersionsByFunction",
)


def _prune_statements(config: Config) -> list[dict[str, Any]]:
    """Reading what workloads use (these list calls take no resource scope), listing every
    repository to find the mirror's, and deleting images only under the prefix."""
    account, region = _account_and_region(config)
    return [
        {
            "Sid": "PruneImagesInUse",
            "Effect": "Allow",
            "Action": list(PRUNE_IN_USE_ACTIONS),
            "Resource": "*",
        },
        {
            "Sid": "PruneListRepositories",
            "Effect": "Allow",
            "Action": ["ecr:DescribeRepositories"],
            "Resource": f"arn:aws:ecr:{region}:{account}:repository/*",
        },
        {
            "Sid": "PruneDeleteImages",
            "Effect": "Allow",
            "Action": ["ecr:BatchDeleteImage"],
            "Resource": _mirror_repositories(config),
        },
    ]


def _event_statements(config: Config) -> list[dict[str, Any]]:
    """Publishing change events; a webhook needs no AWS permission."""
    account, region = _account_and_region(config)
    buses = sorted(
        s.eventbridge.bus
        if s.eventbridge.bus.startswith("arn:")
        else f"arn:aws:events:{region}:{account}:event-bus/{s.eventbridge.bus}"
        for s in config.model.events
        if s.eventbridge is not None
    )
    topics = sorted(s.sns.topic_arn for s in config.model.events if s.sns is not None)
    statements: list[dict[str, Any]] = []
    if buses:
        statements.append(
            {
                "Sid": "ChangeEventsBus",
                "Effect": "Allow",
                "Action": ["events:PutEvents"],
                "Resource": buses,
            }
        )
    if topics:
        statements.append(
            {
                "Sid": "ChangeEventsTopic",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": topics,
            }
        )
    return statements


def _config_statements(config: Config) -> list[dict[str, Any]]:
    """Reading a config kept in S3 or Parameter Store, and publishing the CodeBuild include
    there (`daemon.publish_buildspec`)."""
    account, region = _account_and_region(config)
    wanted = [("ReadConfig", config.source, False)]
    publishing = config.model.daemon.publish_buildspec
    if publishing is not None:
        wanted.append(("PublishBuildspec", publishing.output, True))
    statements: list[dict[str, Any]] = []
    for sid, where, writes in wanted:
        resource = remote_resource(where)
        if resource is None:
            continue
        service, bucket, key = resource
        if service == "s3":
            action = "s3:PutObject" if writes else "s3:GetObject"
            arn = f"arn:aws:s3:::{bucket}/{key}"
        else:
            action = "ssm:PutParameter" if writes else "ssm:GetParameter"
            arn = f"arn:aws:ssm:{region}:{account}:parameter{key}"
        statements.append({"Sid": sid, "Effect": "Allow", "Action": [action], "Resource": arn})
    return statements


def _ecr_statements(config: Config) -> list[dict[str, Any]]:
    target = config.model.target
    account, region = _account_and_region(config)
    repositories = _mirror_repositories(config)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": "*",
        },
        {
            "Sid": "MirrorRepositories",
            "Effect": "Allow",
            "Action": sorted(DATA_PLANE_PUSH | repository_actions(config)),
            "Resource": repositories,
        },
    ]
    encryption = target.repository.encryption
    if isinstance(encryption, KmsEncryption):
        statements.append(
            {
                "Sid": "RepositoryEncryptionKey",
                "Effect": "Allow",
                "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"],
                "Resource": encryption.kms_key
                if encryption.kms_key and encryption.kms_key.startswith("arn:")
                else f"arn:aws:kms:{region}:{account}:key/*",
                "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{region}.amazonaws.com"}},
            }
        )
    statements += _pull_through_statements(config, account, region)
    return statements


PULL_THROUGH_ACTIONS = (
    "ecr:CreatePullThroughCacheRule",
    "ecr:DescribePullThroughCacheRules",
    "ecr:UpdatePullThroughCacheRule",
    "ecr:ValidatePullThroughCacheRule",
    "ecr:CreateRepositoryCreationTemplate",
    "ecr:DescribeRepositoryCreationTemplates",
    "ecr:UpdateRepositoryCreationTemplate",
)


def _pull_through_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    from mirror.ptc import SECRET_PREFIX, ptc_prefix

    cached = {
        host: settings
        for host, settings in config.model.registries.items()
        if settings.mode == "pull-through-cache"
    }
    if not cached:
        return []
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PullThroughCacheRules",
            "Effect": "Allow",
            "Action": list(PULL_THROUGH_ACTIONS),
            "Resource": "*",
        }
    ]
    prefix = config.model.target.repository_prefix
    warmed = sorted(
        f"arn:aws:ecr:{region}:{account}:repository/{ptc_prefix(prefix, host)}/*"
        for host, settings in cached.items()
        if settings.prewarm
    )
    if warmed:
        statements.append(
            {
                "Sid": "PullThroughCachePrewarm",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:BatchImportUpstreamImage",
                    "ecr:CreateRepository",
                ],
                "Resource": warmed,
            }
        )
    if any(settings.credential_list for settings in cached.values()):
        statements.append(
            {
                "Sid": "PullThroughCacheSecrets",
                "Effect": "Allow",
                "Action": [
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                ],
                "Resource": f"arn:aws:secretsmanager:{region}:{account}:secret:{SECRET_PREFIX}*",
            }
        )
    return statements
