"""Pull-through cache calls, validated against ECR's real API model by botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import ANY, Stubber

from mirror.aws.ecr import AwsError, Refusals
from mirror.aws.ptc import PullThroughCache, ptc_prefix
from mirror.config.lifecycle import DEFAULT_POLICY
from mirror.config.model import RepositorySettings
from mirror.oci.credentials import Credentials

SECRETS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache"
ARN = f"{SECRETS}/mirror-docker-hub-Ab12Cd"
OLD_ARN = f"{SECRETS}/an-older-secret-Zz99Yy"
SETTINGS = RepositorySettings(tags={"owner": "platform"})


@pytest.fixture
def aws() -> Iterator[tuple[PullThroughCache, Stubber, Stubber]]:
    keys = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    ecr = boto3.client("ecr", **keys)
    secrets = boto3.client("secretsmanager", **keys)
    with Stubber(ecr) as ecr_stub, Stubber(secrets) as secrets_stub:
        yield (
            PullThroughCache(ecr, secrets, SETTINGS, DEFAULT_POLICY, Refusals()),
            ecr_stub,
            secrets_stub,
        )
        ecr_stub.assert_no_pending_responses()
        secrets_stub.assert_no_pending_responses()


def no_rule(stub: Stubber, prefix: str) -> None:
    stub.add_client_error(
        "describe_pull_through_cache_rules",
        service_error_code="PullThroughCacheRuleNotFoundException",
        expected_params={"ecrRepositoryPrefixes": [prefix]},
    )


def template_and_validation(stub: Stubber, prefix: str, valid: bool = True) -> None:
    stub.add_response(
        "describe_repository_creation_templates",
        {"repositoryCreationTemplates": []},
        {"prefixes": [prefix]},
    )
    stub.add_response(
        "create_repository_creation_template",
        {"registryId": "123456789012", "repositoryCreationTemplate": {"prefix": prefix}},
        {
            "prefix": prefix,
            "description": ANY,
            "appliedFor": ["PULL_THROUGH_CACHE"],
            "imageTagMutability": "MUTABLE",
            "encryptionConfiguration": {"encryptionType": "AES256"},
            "resourceTags": [{"Key": "owner", "Value": "platform"}],
            "lifecyclePolicy": json.dumps(DEFAULT_POLICY),
        },
    )
    stub.add_response(
        "validate_pull_through_cache_rule",
        {
            "ecrRepositoryPrefix": prefix,
            "isValid": valid,
            "failure": "" if valid else "401 upstream",
        },
        {"ecrRepositoryPrefix": prefix},
    )


def test_an_upstream_without_credentials_gets_a_rule_a_template_and_a_validation(aws):
    ptc, ecr, _ = aws
    no_rule(ecr, "mirror/quay")
    ecr.add_response(
        "create_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "mirror/quay", "upstreamRegistryUrl": "quay.io"},
        {"ecrRepositoryPrefix": "mirror/quay", "upstreamRegistryUrl": "quay.io",
         "upstreamRegistry": "quay"},
    )  # fmt: skip
    template_and_validation(ecr, "mirror/quay")

    ptc.ensure("quay.io", "mirror/quay", None)


def test_docker_hub_credentials_go_into_an_ecr_pullthroughcache_secret(aws):
    ptc, ecr, secrets = aws
    name = "ecr-pullthroughcache/mirror-docker-hub"
    secrets.add_client_error(
        "describe_secret", service_error_code="ResourceNotFoundException",
        expected_params={"SecretId": name},
    )  # fmt: skip
    secrets.add_response(
        "create_secret",
        {"ARN": ARN, "Name": name},
        {"Name": name, "Description": ANY,
         "SecretString": json.dumps({"username": "ci-bot", "accessToken": "dckr_pat_x"})},
    )  # fmt: skip
    no_rule(ecr, "mirror/docker-hub")
    ecr.add_response(
        "create_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "mirror/docker-hub"},
        {"ecrRepositoryPrefix": "mirror/docker-hub", "upstreamRegistryUrl": "registry-1.docker.io",
         "upstreamRegistry": "docker-hub", "credentialArn": ARN},
    )  # fmt: skip
    template_and_validation(ecr, "mirror/docker-hub")

    ptc.ensure("docker.io", "mirror/docker-hub", Credentials("ci-bot", "dckr_pat_x"))


def test_a_configured_ecr_pullthroughcache_secret_is_used_as_it_is(aws):
    ptc, ecr, _ = aws
    ecr.add_response(
        "describe_pull_through_cache_rules",
        {"pullThroughCacheRules": [{"ecrRepositoryPrefix": "mirror/docker-hub",
                                    "upstreamRegistryUrl": "registry-1.docker.io",
                                    "credentialArn": OLD_ARN}]},
        {"ecrRepositoryPrefixes": ["mirror/docker-hub"]},
    )  # fmt: skip
    ecr.add_response(
        "update_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "mirror/docker-hub"},
        {"ecrRepositoryPrefix": "mirror/docker-hub", "credentialArn": ARN},
    )
    template_and_validation(ecr, "mirror/docker-hub")

    ptc.ensure("docker.io", "mirror/docker-hub", Credentials("u", "p"), secret_arn=ARN)


def test_a_rule_created_meanwhile_by_another_run_is_accepted(aws):
    ptc, ecr, _ = aws
    no_rule(ecr, "mirror/quay")
    ecr.add_client_error(
        "create_pull_through_cache_rule",
        service_error_code="PullThroughCacheRuleAlreadyExistsException",
    )
    ecr.add_response(
        "describe_pull_through_cache_rules",
        {"pullThroughCacheRules": [{"ecrRepositoryPrefix": "mirror/quay",
                                    "upstreamRegistryUrl": "quay.io"}]},
        {"ecrRepositoryPrefixes": ["mirror/quay"]},
    )  # fmt: skip
    template_and_validation(ecr, "mirror/quay")

    ptc.ensure("quay.io", "mirror/quay", None)


def test_an_upstream_ecr_refuses_is_a_clear_error(aws):
    ptc, ecr, _ = aws
    no_rule(ecr, "mirror/kubernetes")
    ecr.add_client_error(
        "create_pull_through_cache_rule",
        service_error_code="UnsupportedUpstreamRegistryException",
        service_message="The specified upstream registry isn't supported in this Region",
    )
    with pytest.raises(AwsError) as caught:
        ptc.ensure("registry.k8s.io", "mirror/kubernetes", None)
    assert caught.value.code == "UnsupportedUpstreamRegistryException"
    assert "isn't supported in this Region" in caught.value.message


def test_a_rule_that_does_not_validate_fails_with_the_reason(aws):
    ptc, ecr, _ = aws
    no_rule(ecr, "mirror/quay")
    ecr.add_response("create_pull_through_cache_rule", {}, None)
    template_and_validation(ecr, "mirror/quay", valid=False)
    with pytest.raises(AwsError, match="does not validate: 401 upstream"):
        ptc.ensure("quay.io", "mirror/quay", None)


def test_a_rule_prefix_for_another_upstream_is_a_conflict(aws):
    ptc, ecr, _ = aws
    ecr.add_response(
        "describe_pull_through_cache_rules",
        {"pullThroughCacheRules": [{"ecrRepositoryPrefix": "mirror/quay",
                                    "upstreamRegistryUrl": "public.ecr.aws"}]},
        None,
    )  # fmt: skip
    with pytest.raises(AwsError, match=r"caches public\.ecr\.aws, not quay\.io"):
        ptc.ensure("quay.io", "mirror/quay", None)


@pytest.mark.parametrize(
    ("prefix", "host", "expected"),
    [
        ("mirror", "docker.io", "mirror/docker-hub"),
        ("", "quay.io", "quay"),
        ("platform/base-images/mirror", "docker.io", "docker-hub"),
        ("mirror", "averyveryverylongname.azurecr.io", "averyveryverylongname.azurecr"),
    ],
)
def test_rule_prefixes_fall_back_to_the_alias_when_too_long(prefix, host, expected):
    assert ptc_prefix(prefix, host) == expected


UPSTREAM_ECR = "444455556666.dkr.ecr.eu-west-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/mirror-ecr-upstream"


def test_another_ecr_registry_is_cached_with_the_role_ecr_assumes_and_no_secret(aws):
    ptc, ecr, _ = aws  # the secrets stub expects nothing: no secret is read or written
    no_rule(ecr, "eu-ecr")
    ecr.add_response(
        "create_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "eu-ecr", "upstreamRegistryUrl": UPSTREAM_ECR},
        {"ecrRepositoryPrefix": "eu-ecr", "upstreamRegistryUrl": UPSTREAM_ECR,
         "upstreamRegistry": "ecr", "customRoleArn": ROLE},
    )  # fmt: skip
    template_and_validation(ecr, "eu-ecr")

    ptc.ensure(UPSTREAM_ECR, "eu-ecr", None, role_arn=ROLE)


def test_a_template_ecr_refuses_is_recorded_and_the_rule_still_serves(aws):
    ptc, ecr, _ = aws
    no_rule(ecr, "mirror/quay")
    ecr.add_response("create_pull_through_cache_rule", {"ecrRepositoryPrefix": "mirror/quay"})
    ecr.add_client_error(
        "describe_repository_creation_templates",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform ecr:DescribeRepositoryCreationTemplates",
    )
    ecr.add_response(
        "validate_pull_through_cache_rule", {"ecrRepositoryPrefix": "mirror/quay", "isValid": True}
    )

    ptc.ensure("quay.io", "mirror/quay", None)

    (refused,) = ptc._refusals.all()
    assert (refused.repository, refused.setting) == ("mirror/quay", "creation_template")
