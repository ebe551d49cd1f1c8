"""Archived images that something pins are restored; nothing else is. ECR's archive
APIs are checked against the real ECR model with botocore's Stubber (moto has none)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from mirror.oci.types import OCI_INDEX, OCI_MANIFEST
from mirror.prune.inuse import PruneAborted, Use
from mirror.prune.plan import Scope
from mirror.prune.restore import restore_pinned

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = "mirror/docker-hub/library/python"
INDEX, CHILD, LOCKED, LOOSE, OLD_CHILD = (f"sha256:{c * 64}" for c in "abcde")
SCOPE = Scope(REGISTRY, "mirror", {})


@pytest.fixture
def ecr():
    client = boto3.client(
        "ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def archived(stub: Stubber, *digests: str) -> None:
    stub.add_response(
        "describe_images",
        {"imageDetails": [{"imageDigest": d, "imageStatus": "ARCHIVED"} for d in digests]},
        {"repositoryName": REPO, "filter": {"imageStatus": "ARCHIVED"}, "maxResults": 1000},
    )


def test_archived_children_of_a_tagged_index_and_locked_digests_come_back(ecr):
    client, stub = ecr
    archived(stub, CHILD, LOCKED, LOOSE)
    stub.add_response(
        "describe_images",
        {"imageDetails": [
            {"imageDigest": INDEX, "imageTags": ["3.12"], "imageManifestMediaType": OCI_INDEX}]},
        {"repositoryName": REPO, "filter": {"tagStatus": "TAGGED", "imageStatus": "ACTIVE"},
         "maxResults": 1000},
    )  # fmt: skip
    index = {"mediaType": OCI_INDEX, "manifests": [{"digest": CHILD, "mediaType": OCI_MANIFEST}]}
    stub.add_response(
        "batch_get_image",
        {"images": [
            {"imageId": {"imageDigest": INDEX}, "imageManifest": json.dumps(index)},
            {"imageId": {"imageDigest": LOCKED}, "imageManifest": json.dumps({"layers": []})}]},
    )  # fmt: skip
    for digest in (CHILD, LOCKED):
        stub.add_response(
            "update_image_storage_class",
            {"imageStatus": "ACTIVATING", "imageId": {"imageDigest": digest}},
            {"repositoryName": REPO, "imageId": {"imageDigest": digest},
             "targetStorageClass": "STANDARD"},
        )  # fmt: skip
    lock = Use(f"{REGISTRY}/{REPO}@{LOCKED}", "pinned by mirror.lock.json")

    restored, errors = restore_pinned(client, SCOPE, [REPO], lambda: [lock])

    assert errors == []
    assert [(r.digest, r.pinned_by) for r in restored] == [
        (CHILD, "child of index 3.12"),
        (LOCKED, "pinned by mirror.lock.json"),
    ]  # LOOSE: untagged, unpinned, not pulled for 30 days: it stays archived


def test_nothing_archived_costs_one_call_and_asks_no_workload(ecr):
    client, stub = ecr
    archived(stub)

    def uses() -> list[Use]:
        raise AssertionError("workloads are listed only when an image is archived")

    assert restore_pinned(client, SCOPE, [REPO], uses) == ([], [])


def test_workloads_that_cannot_be_listed_are_an_error_and_the_targets_pins_still_come_back(ecr):
    client, stub = ecr
    archived(stub, OLD_CHILD)
    stub.add_response(
        "describe_images",
        {"imageDetails": [
            {"imageDigest": INDEX, "imageTags": ["3.12"], "imageManifestMediaType": OCI_INDEX}]},
    )  # fmt: skip
    index = {"manifests": [{"digest": OLD_CHILD, "mediaType": OCI_MANIFEST}]}
    stub.add_response(
        "batch_get_image",
        {"images": [{"imageId": {"imageDigest": INDEX}, "imageManifest": json.dumps(index)}]},
    )
    stub.add_response("update_image_storage_class", {"imageStatus": "ACTIVATING"})

    def uses() -> list[Use]:
        raise PruneAborted("cannot list ECS clusters: AccessDeniedException", hint="grant it")

    restored, errors = restore_pinned(client, SCOPE, [REPO], uses)

    assert [r.digest for r in restored] == [OLD_CHILD]
    assert [(e.code, e.hint) for e in errors] == [("PRUNE_ABORTED", "grant it")]
