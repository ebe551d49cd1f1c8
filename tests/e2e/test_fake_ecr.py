"""The test ECR refuses what ECR refuses: its lifecycle rules are ECR's documented ones,
not a check widened until mirror's output passes."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from mirror.config.lifecycle import DEFAULT_POLICY
from tests.support.lifecycle_cases import ACCEPTED, REFUSED

pytestmark = pytest.mark.e2e

NAME = "mirror/docker-hub/library/nginx"


@pytest.fixture
def repository(aws):
    client = boto3.client("ecr")
    client.create_repository(repositoryName=NAME)
    return client


@pytest.mark.parametrize(("why", "documented", "policy"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_test_ecr_refuses_each_policy_ecr_refuses(repository, why, documented, policy):
    with pytest.raises(ClientError) as refused:
        repository.put_lifecycle_policy(repositoryName=NAME, lifecyclePolicyText=json.dumps(policy))
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException", why
    with pytest.raises(ClientError):  # nothing was stored
        repository.get_lifecycle_policy(repositoryName=NAME)


@pytest.mark.parametrize(("why", "policy"), [("mirror's default", DEFAULT_POLICY), *ACCEPTED])
def test_the_test_ecr_accepts_what_ecr_documents(repository, why, policy):
    repository.put_lifecycle_policy(repositoryName=NAME, lifecyclePolicyText=json.dumps(policy))
    stored = repository.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]
    assert json.loads(stored) == policy


BAD_TAGS = [  # ECR API reference, Tag (key 1-128, value 0-256); AWS reserves aws:
    ("reserved prefix", [{"Key": "aws:owner", "Value": "x"}]),
    ("key too long", [{"Key": "k" * 129, "Value": "x"}]),
    ("value too long", [{"Key": "k", "Value": "v" * 257}]),
    ("more than 50", [{"Key": f"k{i}", "Value": "v"} for i in range(51)]),
]


@pytest.mark.parametrize(("why", "tags"), BAD_TAGS, ids=[c[0] for c in BAD_TAGS])
def test_the_test_ecr_refuses_tags_ecr_refuses(aws, why, tags):
    client = boto3.client("ecr")
    with pytest.raises(ClientError) as refused:
        client.create_repository(repositoryName="mirror/a", tags=tags)
    assert refused.value.response["Error"]["Code"] == "InvalidTagParameterException", why
    arn = client.create_repository(repositoryName="mirror/b")["repository"]["repositoryArn"]
    with pytest.raises(ClientError):
        client.tag_resource(resourceArn=arn, tags=tags)
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_blob_mounting_is_off_until_it_is_turned_on(aws):
    client = boto3.client("ecr")
    assert client.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    assert client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    with pytest.raises(ClientError):
        client.put_account_setting(name="BLOB_MOUNTING", value="SOMETIMES")


def test_the_test_s3_refuses_a_request_for_another_accounts_bucket(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="builds")
    s3.put_object(Bucket="builds", Key="k", Body=b"x", ExpectedBucketOwner="123456789012")
    for call in (
        lambda: s3.put_object(
            Bucket="builds", Key="k", Body=b"y", ExpectedBucketOwner="999988887777"
        ),
        lambda: s3.get_object(Bucket="builds", Key="k", ExpectedBucketOwner="999988887777"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] in ("AccessDenied", "403")
    assert s3.get_object(Bucket="builds", Key="k")["Body"].read() == b"x"
