"""ECR API errors: a reached quota is named and not retried; a lost race is not an error."""

import boto3
import pytest
from botocore.stub import Stubber

from mirror.aws.ecr import AwsError, Ecr
from mirror.config.model import RepositorySettings


@pytest.fixture
def stubbed():
    client = boto3.client(
        "ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield Ecr(client, RepositorySettings(), None), stub
        stub.assert_no_pending_responses()


def test_a_reached_quota_names_it_and_is_not_retried(stubbed):
    ecr, stub = stubbed
    stub.add_client_error("describe_repositories", service_error_code="RepositoryNotFoundException")
    stub.add_client_error(
        "create_repository",
        service_error_code="LimitExceededException",
        service_message="The operation did not succeed because it would have exceeded a limit",
    )
    with pytest.raises(AwsError) as caught:
        ecr.ensure_repository("mirror/docker-hub/library/nginx")
    assert caught.value.code == "LIMIT_EXCEEDED"
    assert "Registered repositories per Region" in caught.value.message
    assert "Service Quotas" in caught.value.hint


def test_a_repository_created_meanwhile_by_another_run_is_reconciled(stubbed):
    ecr, stub = stubbed
    name = "mirror/docker-hub/library/nginx"
    stub.add_client_error("describe_repositories", service_error_code="RepositoryNotFoundException")
    stub.add_client_error(
        "create_repository", service_error_code="RepositoryAlreadyExistsException"
    )
    stub.add_response(
        "describe_repositories",
        {"repositories": [{
            "repositoryName": name,
            "repositoryArn": f"arn:aws:ecr:us-east-1:123456789012:repository/{name}",
            "imageTagMutability": "MUTABLE",
            "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfiguration": {"encryptionType": "AES256"},
        }]},
        {"repositoryNames": [name]},
    )  # fmt: skip
    arn = f"arn:aws:ecr:us-east-1:123456789012:repository/{name}"
    owned = [{"Key": "managed-by", "Value": "mirror"}, {"Key": "mirror-prefix", "Value": "mirror"}]
    stub.add_response("list_tags_for_resource", {"tags": owned}, {"resourceArn": arn})
    ecr.ensure_repository(name)
    ecr.ensure_repository(name)  # once per run: no second describe


def test_tags_refused_even_alone_mean_no_repository_and_one_retry_only():
    client = boto3.client(
        "ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    ecr = Ecr(client, RepositorySettings(tags={"team": "web"}), None)
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_repositories", service_error_code="RepositoryNotFoundException"
        )
        for _ in range(2):  # with the config's tags, then with mirror's own alone
            stub.add_client_error(
                "create_repository", service_error_code="InvalidTagParameterException"
            )
        with pytest.raises(AwsError) as caught:
            ecr.ensure_repository("mirror/docker-hub/library/nginx")
        stub.assert_no_pending_responses()
    assert caught.value.code == "InvalidTagParameterException"
