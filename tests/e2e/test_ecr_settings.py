"""ECR as it behaves: the default lifecycle policy is one ECR accepts, and a setting ECR
refuses never stops a copy."""

from __future__ import annotations

import json

import boto3
import pytest

from mirror.config.lifecycle import DEFAULT_POLICY
from tests.e2e.test_ecr import ecr_config
from tests.support import skopeo
from tests.support.fake_ecr import ECR_CREDS, InvalidTagParameterException, refuse
from tests.support.images import Image, Index, random_blob

pytestmark = pytest.mark.e2e

IMAGES = "- nginx:1.16\n- python:3.12\n- redis:7"
NAMES = [f"mirror/docker-hub/library/{n}" for n in ("nginx", "python", "redis")]


def seed(seeder):
    seeder.push("library/nginx", "1.16", Image([random_blob(300)]))
    seeder.push("library/redis", "7", Image([random_blob(300)]))
    index = Index([Image([random_blob(200)]), Image([random_blob(200)], architecture="arm64")])
    return seeder.push("library/python", "3.12", index)


def test_a_fresh_sync_on_ecrs_rules_copies_everything_with_the_default_policy(
    ecr, hub, seeder, mirror, tmp_path
):
    index = seed(seeder)

    run = mirror("sync", config=ecr_config(tmp_path, ecr, hub.url, IMAGES))

    assert run.code == 0, run.out + run.err
    assert [i["action"] for i in run.report["images"]] == ["copied"] * 3
    assert run.report["settings_refused"] == []
    assert run.report["blob_mounting"] == "DISABLED"  # ECR's default: opt-in
    summary = run.report["summary"]
    assert summary["blobs_uploaded"] == 8 and summary["blobs_mounted"] == 0
    assert "blobs: 8 uploaded, 0 mounted" in run.out
    assert "BLOB_MOUNTING setting is off" in run.out
    host = ecr.data_plane.host
    assert skopeo.raw_digest(host, f"{NAMES[1]}:3.12", ECR_CREDS) == index
    client = boto3.client("ecr")
    for name in NAMES:
        policy = client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
        assert json.loads(policy) == DEFAULT_POLICY


def test_refused_settings_still_copy_every_image_exit_1_and_are_tried_again_for_free(
    ecr, hub, seeder, mirror, tmp_path, monkeypatch
):
    seed(seeder)
    config = ecr_config(
        tmp_path,
        ecr,
        hub.url,
        IMAGES,
        repository="repository:\n  pull_access: {organization_id: o-a1b2c3d4e5}\n",
    )
    lift_lifecycle = refuse(
        monkeypatch, "put_lifecycle_policy", "transition is not supported in this Region"
    )
    lift_policy = refuse(monkeypatch, "set_repository_policy", "Invalid repository policy")

    run = mirror("sync", config=config)

    assert run.code == 1
    assert [i["action"] for i in run.report["images"]] == ["copied"] * 3
    refused = {(r["repository"], r["setting"]) for r in run.report["settings_refused"]}
    assert refused == {(n, s) for n in NAMES for s in ("lifecycle_policy", "pull_access")}
    lifecycle = next(
        r for r in run.report["settings_refused"] if r["setting"] == "lifecycle_policy"
    )
    assert lifecycle["code"] == "InvalidParameterException"
    assert "transition is not supported in this Region" in lifecycle["message"]
    assert "mirror validate" in lifecycle["hint"]
    assert f"{NAMES[0]}: lifecycle_policy refused by ECR (images still copied)" in run.out
    for image in run.report["images"]:  # the copies are in place whatever ECR refused
        path = image["target"].split("/", 1)[1]
        assert skopeo.raw_digest(ecr.data_plane.host, path, ECR_CREDS) == image["target_digest"]

    again = mirror("sync", config=config)  # still refused: tried again, still exit 1

    assert again.code == 1 and len(again.report["settings_refused"]) == 6

    lift_lifecycle()
    lift_policy()
    hub.reset_counters()
    settled = mirror("sync", config=config)

    assert settled.code == 0, settled.err
    assert [i["action"] for i in settled.report["images"]] == ["skipped"] * 3
    assert hub.counters.manifest_gets == 0  # the settings cost no pull
    client = boto3.client("ecr")
    for name in NAMES:
        policy = client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
        assert json.loads(policy) == DEFAULT_POLICY
        assert "MirrorPullAccess" in client.get_repository_policy(repositoryName=name)["policyText"]


def test_tags_that_ecr_refuses_leave_a_repository_with_mirrors_own_tags_and_the_copy(
    ecr, hub, seeder, mirror, tmp_path, monkeypatch
):
    seeder.push("library/nginx", "1.16", Image([random_blob(300)]))
    config = ecr_config(
        tmp_path, ecr, hub.url, "- nginx:1.16", repository="repository: {tags: {team: web}}"
    )
    refuse(  # as an Organization's tag policy might
        monkeypatch,
        "create_repository",
        "tag team: value not allowed by the tag policy",
        error=InvalidTagParameterException,
        when=lambda **call: {"Key": "team", "Value": "web"} in (call.get("tags") or []),
    )

    run = mirror("sync", config=config)

    assert run.code == 1
    assert run.image("nginx:1.16")["action"] == "copied"
    (refused,) = run.report["settings_refused"]
    assert refused["setting"] == "tags" and refused["repository"] == NAMES[0]
    assert refused["code"] == "InvalidTagParameterException"
    client = boto3.client("ecr")
    (repository,) = client.describe_repositories(repositoryNames=[NAMES[0]])["repositories"]
    tags = client.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert {t["Key"] for t in tags} == {"managed-by", "mirror-prefix"}


def test_with_blob_mounting_on_the_report_says_so_and_gives_no_advice(
    ecr, hub, seeder, mirror, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(300)]))
    boto3.client("ecr").put_account_setting(name="BLOB_MOUNTING", value="ENABLED")

    run = mirror("sync", config=ecr_config(tmp_path, ecr, hub.url, "- nginx:1.16"))

    assert run.code == 0, run.err
    assert run.report["blob_mounting"] == "ENABLED"
    assert "BLOB_MOUNTING" not in run.out
