"""`mirror iam-policy`: the least-privilege IAM policy the current config needs.

Actions come from the features the config turns on, each scoped to the narrowest
resource: the mirror's own repositories (`repository/<prefix>/*`), the configured
secrets, the configured KMS key. sts:GetCallerIdentity needs no permission and is not
listed. A test records the AWS calls a sync makes and checks them against this policy.
"""

from __future__ import annotations

import os
import re
from typing import Any

from mirror.aws.ecr import OWNER_TAG, OWNER_VALUE
from mirror.aws.partitions import partition
from mirror.aws.ptc import SECRET_PREFIX
from mirror.config import Config
from mirror.config.lifecycle import can_archive
from mirror.config.model import (
    KmsEncryption,
    RegistrySettings,
    SecretCredentials,
    on_demand_queue_url,
    queue_arn,
)
from mirror.config.source import remote_resource
from mirror.errors import ConfigError

__all__ = [
    "DATA_PLANE_PUSH",
    "account_and_region",
    "consumer_policy",
    "destination_policies",
    "needs_account",
    "policy_document",
    "repository_actions",
]

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


# What mirror asks of the primary's repositories only: the image-count warning and the
# restore of archived pins.
PRIMARY_ONLY = frozenset({"ecr:DescribeImages", "ecr:UpdateImageStorageClass"})


def repository_actions(config: Config) -> set[str]:
    """Control-plane actions on the mirror's repositories that this config makes mirror call."""
    actions = {
        "ecr:DescribeImages",  # the images-per-repository quota warning
        "ecr:DescribeRepositories",
        "ecr:CreateRepository",
        "ecr:PutImageTagMutability",
        "ecr:PutImageScanningConfiguration",
        "ecr:TagResource",  # the ownership tags every repository gets (ecr.ownership_tags)
        "ecr:ListTagsForResource",
    }
    if config.lifecycle_policy is not None:
        actions |= {"ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy"}
    if config.retired_lifecycle_policy is not None:
        actions |= {"ecr:DeleteLifecyclePolicy", "ecr:GetLifecyclePolicy"}
    if config.model.target.repository.pull_access is not None:
        actions |= {"ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy"}
    if can_archive(config.lifecycle_policy):  # archived images that something pins
        actions.add("ecr:UpdateImageStorageClass")
    return actions


def account_and_region(config: Config, account: str | None = None) -> tuple[str, str]:
    """The target's account and Region: from `target.registry`, else `account` (the
    caller asked STS, or was told `--account`). Never `*`: a policy for every account
    is not least privilege."""
    target = config.model.target
    match = re.match(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.", target.registry or "")
    if match:
        return match.group(1), match.group(2)
    region = target.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:  # asked first: without one, STS cannot be asked for the account either
        raise ConfigError(
            "the target's Region is unknown", hint="set target.region (or AWS_REGION)"
        )
    if account is None or not re.fullmatch(r"\d{12}", account):
        raise ConfigError(
            "the target's AWS account is unknown: target.registry is not set and STS could "
            "not be asked",
            hint="pass --account 123456789012, or set target.registry",
        )
    return account, region


def _secret_resource(arn: str, warnings: list[str]) -> str:
    """A secret's ARN as IAM must match it: Secrets Manager appends `-` and six random
    characters to every secret's ARN, so a partial ARN (the name alone) never matches."""
    if re.search(r"-[A-Za-z0-9]{6}$", arn):
        return arn
    warnings.append(
        f"{arn} is a partial secret ARN: the policy matches it as {arn}-?????? "
        "(write the full ARN, with its 6-character suffix, to name exactly one secret)"
    )
    return f"{arn}-??????"


def _mirror_repositories(config: Config, account: str, region: str) -> str:
    """The ARN pattern of every repository under the mirror's prefix."""
    prefix = config.model.target.repository_prefix.strip("/")
    where = f"{partition(region)}:ecr:{region}:{account}"
    return f"arn:{where}:repository/{prefix + '/' if prefix else ''}*"


def consumer_policy(config: Config, account: str | None = None) -> dict[str, Any]:
    """What a build role in a member account needs to pull the mirror (`iam-policy
    --consumer`): ECR's login, and the read actions on the mirror's repositories. The
    repositories' own policy (`pull_access`) must let that account in as well."""
    from mirror.aws.access import PULL_ACTIONS

    account, region = account_and_region(config, account)
    statements = [
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": "*",
        },
        {
            "Sid": "PullTheMirror",
            "Effect": "Allow",
            "Action": list(PULL_ACTIONS),
            "Resource": [  # each replica in its own account
                _mirror_repositories(config, a, r)
                for a, r in [
                    (account, region),
                    *((d.account or account, d.region) for d in config.model.target.replicate_to),
                ]
            ],
        },
    ]
    queue = on_demand_queue_url(config.model.on_demand)
    if queue is not None:  # copy on miss: the include reports what it lacks
        statements.append(
            {
                "Sid": "ReportMisses",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": queue_arn(queue, partition(region), region),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _uses_account(config: Config) -> bool:
    """Whether any statement names the target's account: an ECR target, prune, a config
    or include in Parameter Store or S3 (its bucket must be the account's), an event bus
    given by name."""
    model = config.model
    sources = [
        config.source,
        *([model.daemon.publish_buildspec.output] if model.daemon.publish_buildspec else []),
    ]
    in_ssm = any(source.startswith(("ssm:", "s3://")) for source in sources)
    bus = any(
        s.eventbridge is not None and not s.eventbridge.bus.startswith("arn:") for s in model.events
    )
    return (
        model.target.kind == "ecr"
        or model.prune is not None
        or in_ssm
        or bus
        or model.coordination is not None
        or model.on_demand is not None
    )


def needs_account(config: Config) -> bool:
    """Whether the policy names the account and `target.registry` does not say it."""
    return _uses_account(config) and not re.match(r"^\d{12}\.", config.model.target.registry or "")


def policy_document(
    config: Config, account: str | None = None, warnings: list[str] | None = None
) -> dict[str, Any]:
    """The policy; its Statement list is empty when the config needs no AWS permission.
    `account` is used when `target.registry` does not name one; what the caller should
    know about the result is appended to `warnings`."""
    warnings = [] if warnings is None else warnings
    if _uses_account(config):
        account, region = account_and_region(config, account)
    else:  # no statement names an account or a Region (S3, SNS and secret ARNs are given)
        account, region = "", ""
    statements = (
        _ecr_statements(config, account, region) if config.model.target.kind == "ecr" else []
    )
    secrets = sorted(
        _secret_resource(spec.secret_arn, warnings)
        for settings in config.model.registries.values()
        for spec in settings.credential_list
        if isinstance(spec, SecretCredentials)
    )
    statements += _config_statements(config, account, region)
    if config.model.prune is not None:
        statements += _prune_statements(config, account, region)
    elif config.model.target.kind == "ecr" and can_archive(config.lifecycle_policy):
        statements.append(_pins_in_use_statement())
    statements += _event_statements(config, account, region)
    statements += _coordination_statements(config, account, region)
    queue = on_demand_queue_url(config.model.on_demand)
    if queue is not None:
        statements.append(
            {
                "Sid": "OnDemandQueue",  # the daemon reads what builds reported
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                "Resource": queue_arn(queue, partition(region), region),
            }
        )
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


def _remote_arn(source: str, account: str, region: str) -> tuple[str, str] | None:
    """("s3" or "ssm", the ARN) of an `s3://` or `ssm:/` source; None for a local path."""
    resource = remote_resource(source)
    if resource is None:
        return None
    service, bucket, key = resource
    if service == "s3":
        return service, f"arn:{partition(region)}:s3:::{bucket}/{key}"
    return service, f"arn:{partition(region)}:ssm:{region}:{account}:parameter{key}"


def _protected_reads(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    """Reading the locks and includes of `prune.protect` kept in S3 or Parameter Store."""
    assert config.model.prune is not None
    objects: list[str] = []
    parameters: list[str] = []
    for source in config.model.prune.protect:
        found = _remote_arn(source, account, region)
        if found is not None:
            (objects if found[0] == "s3" else parameters).append(found[1])
    statements: list[dict[str, Any]] = []
    for sid, action, arns in (
        ("PruneProtectObjects", "s3:GetObject", objects),
        ("PruneProtectParameters", "ssm:GetParameter", parameters),
    ):
        if arns:
            statement = {
                "Sid": sid,
                "Effect": "Allow",
                "Action": [action],
                "Resource": sorted(arns),
            }
            statements.append(
                _owned_buckets(statement, account) if action.startswith("s3:") else statement
            )
    return statements


def _owned_buckets(statement: dict[str, Any], account: str) -> dict[str, Any]:
    """An S3 statement only for buckets of `account`: a bucket of the same name in another
    account (someone registered it) is not covered."""
    return {**statement, "Condition": {"StringEquals": {"s3:ResourceAccount": account}}}


def _pins_in_use_statement() -> dict[str, Any]:
    """What workloads pin, read only when a sync finds an archived image: the lifecycle
    policy archives untagged images, and those still in use are restored."""
    return {
        "Sid": "ImagesInUse",
        "Effect": "Allow",
        "Action": list(PRUNE_IN_USE_ACTIONS),
        "Resource": "*",
    }


def _prune_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    """Reading what workloads use (these list calls take no resource scope), listing every
    repository to find the mirror's, and deleting images only under the prefix."""
    return [
        *_protected_reads(config, account, region),
        {**_pins_in_use_statement(), "Sid": "PruneImagesInUse"},
        {
            "Sid": "PruneListRepositories",
            "Effect": "Allow",
            "Action": ["ecr:DescribeRepositories", "ecr:ListTagsForResource"],
            "Resource": f"arn:{partition(region)}:ecr:{region}:{account}:repository/*",
        },
        {
            "Sid": "PruneDeleteImages",
            "Effect": "Allow",
            "Action": ["ecr:BatchDeleteImage"],
            "Resource": _mirror_repositories(config, account, region),
            # Only repositories tagged as mirror's, whatever their names.
            "Condition": {"StringEquals": {f"aws:ResourceTag/{OWNER_TAG}": OWNER_VALUE}},
        },
    ]


# What mirror asks of its coordination table (mirror/coordination/table.py): the item
# calls, and describing the table, creating it and turning its TTL on when it is missing.
COORDINATION_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "dynamodb:UpdateTimeToLive",
)


def _coordination_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    """The coordination table, and only it."""
    settings = config.model.coordination
    if settings is None:
        return []
    return [
        {
            "Sid": "Coordination",
            "Effect": "Allow",
            "Action": list(COORDINATION_ACTIONS),
            "Resource": (
                f"arn:{partition(region)}:dynamodb:{region}:{account}:table/"
                f"{settings.dynamodb_table}"
            ),
        }
    ]


def _event_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    """Publishing change events; a webhook needs no AWS permission."""
    buses = sorted(
        s.eventbridge.bus
        if s.eventbridge.bus.startswith("arn:")
        else f"arn:{partition(region)}:events:{region}:{account}:event-bus/{s.eventbridge.bus}"
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


def _config_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    """Reading a config kept in S3 or Parameter Store, and publishing the CodeBuild include
    there (`daemon.publish_buildspec`)."""
    wanted = [("ReadConfig", config.source, False)]
    publishing = config.model.daemon.publish_buildspec
    if publishing is not None:
        wanted.append(("PublishBuildspec", publishing.output, True))
    statements: list[dict[str, Any]] = []
    for sid, where, writes in wanted:
        found = _remote_arn(where, account, region)
        if found is None:
            continue
        service, arn = found
        if service == "s3":
            action = "s3:PutObject" if writes else "s3:GetObject"
        else:
            action = "ssm:PutParameter" if writes else "ssm:GetParameter"
        statement = {"Sid": sid, "Effect": "Allow", "Action": [action], "Resource": arn}
        statements.append(_owned_buckets(statement, account) if service == "s3" else statement)
    return statements


def _ecr_statements(config: Config, account: str, region: str) -> list[dict[str, Any]]:
    target = config.model.target
    repositories = _mirror_repositories(config, account, region)
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
        {
            "Sid": "RegistrySettings",  # BLOB_MOUNTING, read for the pass's report
            "Effect": "Allow",
            "Action": ["ecr:GetAccountSetting"],
            "Resource": "*",
        },
    ]
    encryption = target.repository.encryption
    if isinstance(encryption, KmsEncryption):
        statements.append(_kms_statement(encryption.kms_key, account, region))
    statements += _pull_through_statements(config, account, region)
    replicas = [d.region for d in target.replicate_to if d.account in (None, account)]
    if replicas:  # what a replica in this account lacks, copied there (mirror/engine/replicas.py)
        statements.append(
            {
                "Sid": "MirrorReplicas",
                "Effect": "Allow",
                "Action": sorted(DATA_PLANE_PUSH | repository_actions(config) - PRIMARY_ONLY),
                "Resource": [_mirror_repositories(config, account, r) for r in replicas],
            }
        )
    if target.replicate_to:
        statements.append(
            {
                "Sid": "Replication",  # registry-level calls: no repository ARN applies
                "Effect": "Allow",
                "Action": [
                    "ecr:CreateRepositoryCreationTemplate",
                    "ecr:DescribeRegistry",
                    "ecr:DescribeRepositoryCreationTemplates",
                    "ecr:PutReplicationConfiguration",
                    "ecr:UpdateRepositoryCreationTemplate",
                ],
                "Resource": "*",
            }
        )
        statements.append(
            {
                "Sid": "ReplicationServiceRole",  # ECR makes it on the first configuration
                "Effect": "Allow",
                "Action": ["iam:CreateServiceLinkedRole"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"iam:AWSServiceName": "replication.ecr.amazonaws.com"}
                },
            }
        )
    return statements


def destination_policies(config: Config, account: str | None = None) -> dict[str, Any]:
    """For each destination in another account, the registry permissions policy that
    account applies (`aws ecr put-registry-policy`) so this one may replicate into it."""
    source, _ = account_and_region(config, account)
    policies: dict[str, Any] = {}
    for destination in config.model.target.replicate_to:
        if destination.account in (None, source):
            continue
        policy = policies.setdefault(
            destination.account, {"Version": "2012-10-17", "Statement": []}
        )
        policy["Statement"].append(
            {
                "Sid": f"MirrorReplicationFrom{source}{destination.region.replace('-', '')}",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition(destination.region)}:iam::{source}:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": (
                    f"arn:{partition(destination.region)}:ecr:{destination.region}:"
                    f"{destination.account}:repository/*"
                ),
            }
        )
    return policies


def _kms_statement(key: str | None, account: str, region: str) -> dict[str, Any]:
    """The repositories' KMS key: its ARN; a key id made into one; an alias as the keys
    that carry it (kms:ResourceAliases), never every key in the account."""
    via = {"kms:ViaService": f"ecr.{region}.amazonaws.com"}
    condition: dict[str, Any] = {"StringEquals": via}
    if key is None:  # the AWS managed key ECR uses
        resource = f"arn:{partition(region)}:kms:{region}:{account}:key/*"
        condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": "alias/aws/ecr"}
    elif key.startswith("arn:") and ":alias/" not in key:
        resource = key
    elif key.startswith("alias/") or ":alias/" in key:
        resource = f"arn:{partition(region)}:kms:{region}:{account}:key/*"
        alias = key[key.index("alias/") :]
        condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": alias}
    else:
        resource = f"arn:{partition(region)}:kms:{region}:{account}:key/{key}"
    return {
        "Sid": "RepositoryEncryptionKey",
        "Effect": "Allow",
        "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"],
        "Resource": resource,
        "Condition": condition,
    }


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
    from mirror.aws.ptc import managed_secret_name, ptc_prefix

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
    roles = sorted({s.role_arn for s in cached.values() if s.role_arn})
    if roles:  # ECR-to-ECR rules: CreatePullThroughCacheRule passes the role to ECR
        statements.append(
            {
                "Sid": "PullThroughCacheUpstreamRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": roles,
            }
        )
    prefix = config.model.target.repository_prefix
    warmed = sorted(
        f"arn:{partition(region)}:ecr:{region}:{account}:repository/{ptc_prefix(prefix, host)}/*"
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
    secret_arn = f"arn:{partition(region)}:secretsmanager:{region}:{account}:secret:"
    managed = sorted(
        f"{secret_arn}{managed_secret_name(prefix, host)}-??????"
        for host, settings in cached.items()
        if settings.credential_list and not _given_ptc_secret(settings)
    )
    if managed:  # only the secrets mirror writes, by name: none other of ecr-pullthroughcache/
        statements.append(
            {
                "Sid": "PullThroughCacheSecrets",
                "Effect": "Allow",
                "Action": [
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:PutSecretValue",
                ],
                "Resource": managed,
            }
        )
    return statements


def _given_ptc_secret(settings: RegistrySettings) -> bool:
    """The config names an `ecr-pullthroughcache/` secret itself: ECR reads it, mirror
    writes nothing (ptc.PullThroughCache)."""
    first = settings.credential_list[0]
    return isinstance(first, SecretCredentials) and f":secret:{SECRET_PREFIX}" in first.secret_arn
