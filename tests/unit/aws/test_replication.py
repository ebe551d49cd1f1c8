"""Replication's creation templates, checked against the real ECR model (moto has none)."""

import json

import boto3
from botocore.stub import Stubber

from mirror.aws.access import merge_policy
from mirror.aws.ecr import Refusals
from mirror.aws.replication import Replication
from mirror.config.lifecycle import DEFAULT_POLICY
from mirror.config.model import PullAccess, ReplicaDestination, RepositorySettings


def client(region: str):
    return boto3.client("ecr", region_name=region, aws_access_key_id="x", aws_secret_access_key="x")


def test_a_replica_region_gets_a_replication_template_with_the_primarys_settings():
    primary, ireland = client("us-east-1"), client("eu-west-1")
    settings = RepositorySettings(pull_access=PullAccess(organization_id="o-a1b2c3d4e5"))
    replication = Replication(
        primary,
        lambda region: {"eu-west-1": ireland}[region],
        settings,
        DEFAULT_POLICY,
        "mirror",
        [ReplicaDestination(region="eu-west-1")],
        "123456789012",
        Refusals(),
    )
    rule = {
        "destinations": [{"region": "eu-west-1", "registryId": "123456789012"}],
        "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}],
    }
    with Stubber(primary) as on_primary, Stubber(ireland) as on_ireland:
        on_primary.add_response(
            "describe_registry",
            {"registryId": "123456789012", "replicationConfiguration": {"rules": []}},
        )
        on_primary.add_response(
            "put_replication_configuration",
            {"replicationConfiguration": {"rules": [rule]}},
            {"replicationConfiguration": {"rules": [rule]}},
        )
        on_ireland.add_response(
            "describe_repository_creation_templates",
            {"repositoryCreationTemplates": []},
            {"prefixes": ["mirror"]},
        )
        on_ireland.add_response(
            "create_repository_creation_template",
            {},
            {
                "prefix": "mirror",
                "description": "Settings for replicas of mirror's repositories",
                "appliedFor": ["REPLICATION"],
                "imageTagMutability": "MUTABLE",
                "encryptionConfiguration": {"encryptionType": "AES256"},
                "resourceTags": [],
                "lifecyclePolicy": json.dumps(DEFAULT_POLICY),
                "repositoryPolicy": json.dumps(merge_policy(None, settings.pull_access)),
            },
        )

        replication.ensure()

        on_primary.assert_no_pending_responses()
        on_ireland.assert_no_pending_responses()


def test_pull_access_statements_name_the_organization_and_the_accounts():
    policy = merge_policy(
        None, PullAccess(organization_id="o-a1b2c3d4e5", accounts=["111122223333"])
    )
    org, accounts = policy["Statement"]
    assert org["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}
    assert accounts["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root"]}


def test_rules_that_other_owners_have_are_kept():
    primary = client("us-east-1")
    theirs = {
        "destinations": [{"region": "us-west-2", "registryId": "123456789012"}],
        "repositoryFilters": [{"filter": "payments", "filterType": "PREFIX_MATCH"}],
    }
    ours_before = {  # as earlier versions wrote it: a prefix that matched mirrorball/ too
        "destinations": [{"region": "eu-central-1", "registryId": "123456789012"}],
        "repositoryFilters": [{"filter": "mirror", "filterType": "PREFIX_MATCH"}],
    }
    ours = {
        "destinations": [{"region": "eu-west-1", "registryId": "999988887777"}],
        "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}],
    }
    replication = Replication(
        primary,
        lambda region: None,
        RepositorySettings(),
        None,
        "mirror",
        [ReplicaDestination(region="eu-west-1", account="999988887777")],  # no template here
        "123456789012",
        Refusals(),
    )
    with Stubber(primary) as stub:
        stub.add_response(
            "describe_registry",
            {
                "registryId": "123456789012",
                "replicationConfiguration": {"rules": [theirs, ours_before]},
            },
        )
        stub.add_response(
            "put_replication_configuration",
            {"replicationConfiguration": {"rules": [theirs, ours]}},
            {"replicationConfiguration": {"rules": [theirs, ours]}},
        )
        replication.ensure()
        stub.assert_no_pending_responses()


def test_a_rule_or_template_ecr_refuses_is_recorded_and_never_raised():
    primary, ireland = client("us-east-1"), client("eu-west-1")
    refusals = Refusals()
    replication = Replication(
        primary,
        lambda region: ireland,
        RepositorySettings(),
        DEFAULT_POLICY,
        "mirror",
        [ReplicaDestination(region="eu-west-1")],
        "123456789012",
        refusals,
    )
    with Stubber(primary) as on_primary, Stubber(ireland) as on_ireland:
        on_primary.add_response("describe_registry", {"registryId": "123456789012"})
        on_primary.add_client_error(
            "put_replication_configuration",
            service_error_code="ValidationException",
            service_message="destination Region is not enabled",
        )
        on_ireland.add_client_error(
            "describe_repository_creation_templates",
            service_error_code="AccessDeniedException",
            service_message="not authorized",
        )

        replication.ensure()

    rule, template = refusals.all()
    assert (rule.repository, rule.setting, rule.code) == (
        "replication", "replicate_to", "ValidationException"
    )  # fmt: skip
    assert "destination Region is not enabled" in rule.message and "replicate_to" in rule.hint
    assert (template.repository, template.setting) == ("mirror in eu-west-1", "creation_template")
    assert "mirror iam-policy" in template.hint
