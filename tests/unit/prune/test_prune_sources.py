"""Where prune finds images in use outside ECS (Lambda, a file), and how a workload's
reference maps to a mirror repository. Lambda runs on botocore's Stubber, which checks
every call against the real Lambda service model (moto would need Docker for images)."""

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from mirror.config.model import PruneSettings
from mirror.prune.inuse import PruneAborted, _file_uses, _lambda_uses
from mirror.prune.plan import Scope

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = f"{HOST}/mirror/docker-hub/library/python"


def image_function(stub: Stubber, qualifier: str, uri: str) -> None:
    stub.add_response(
        "get_function",
        {"Code": {"ImageUri": uri, "ResolvedImageUri": f"{REPO}@sha256:{qualifier[-1] * 64}"}},
        {"FunctionName": "api", "Qualifier": qualifier},
    )


def test_lambda_keeps_latest_aliased_and_newest_versions_of_image_functions():
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_response(
            "list_functions",
            {"Functions": [
                {"FunctionName": "api", "PackageType": "Image"},
                {"FunctionName": "zip", "PackageType": "Zip"},
            ]},
        )  # fmt: skip
        versions = [{"Version": v} for v in ["$LATEST", *map(str, range(1, 8))]]
        stub.add_response("list_versions_by_function", {"Versions": versions},
                          {"FunctionName": "api"})  # fmt: skip
        stub.add_response(
            "list_aliases",
            {"Aliases": [{"Name": "prod", "FunctionVersion": "2"}]},
            {"FunctionName": "api"},
        )
        for qualifier in ["$LATEST", "2", "6", "7"]:  # sorted as mirror asks for them
            image_function(stub, qualifier, f"{REPO}:3.{qualifier[-1]}")

        uses = _lambda_uses(client, PruneSettings(keep_function_versions=2))

        stub.assert_no_pending_responses()
    holders = {u.reference: u.holder for u in uses}
    assert holders[f"{REPO}:3.2"] == "Lambda function api (alias prod)"
    assert holders[f"{REPO}:3.7"] == "Lambda function api (version 7)"
    assert f"{REPO}:3.5" not in holders  # older than the newest 2, no alias
    assert any(h == "Lambda function api ($LATEST)" for h in holders.values())


def test_a_lambda_listing_error_aborts_the_prune():
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_client_error("list_functions", service_error_code="AccessDeniedException")
        with pytest.raises(PruneAborted, match=r"cannot list Lambda functions.*nothing was"):
            _lambda_uses(client, PruneSettings())


def test_extra_references_are_read_line_by_line_with_comments(tmp_path: Path):
    listed = tmp_path / "in-use.txt"
    listed.write_text("# EKS, cluster blue\nnginx:1.16\n\n  redis:7   # cache\n")

    uses = _file_uses(listed)

    assert [(u.reference, u.holder) for u in uses] == [
        ("nginx:1.16", "in-use.txt:2"),
        ("redis:7", "in-use.txt:4"),
    ]
    with pytest.raises(PruneAborted, match=r"cannot read prune\.extra_references"):
        _file_uses(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("reference", "located"),
    [
        (f"{HOST}/mirror/docker-hub/library/nginx:1.16",
         ("mirror/docker-hub/library/nginx", "1.16", None)),
        ("nginx:1.16", ("mirror/docker-hub/library/nginx", "1.16", None)),
        ("docker.io/library/nginx@sha256:" + "a" * 64,
         ("mirror/docker-hub/library/nginx", None, "sha256:" + "a" * 64)),
        ("quay.io/prometheus/node-exporter:v1.8.2",
         ("mirror/quay/prometheus/node-exporter", "v1.8.2", None)),
        (f"{HOST}/team/app:1", None),  # not the mirror's
        ("ghcr.io/org/tool:1", None),  # served by the pull-through cache, which ECR owns
        ("not a reference", None),
    ],
)  # fmt: skip
def test_workload_references_map_to_mirror_repositories(reference, located):
    scope = Scope(HOST, "mirror", {}, skipped_prefixes=("mirror/github",))

    assert scope.locate(reference) == located
