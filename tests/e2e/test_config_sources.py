"""A config kept in S3 or Parameter Store, as the ECS deployment reads it."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.support import skopeo
from tests.support.images import Image, random_blob

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def bucket(aws: str) -> None:
    boto3.client("s3").create_bucket(Bucket="ops")


def test_sync_reads_its_config_from_s3(aws, hub, target, seeder, write_config, mirror):
    digest = seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    text = write_config(target, "- nginx:1.16", docker_io=hub.url).read_text()
    boto3.client("s3").put_object(Bucket="ops", Key="mirror/mirror.yaml", Body=text.encode())

    run = mirror("sync", config="s3://ops/mirror/mirror.yaml")

    assert run.code == 0, run.err
    assert skopeo.raw_digest(target.host, "mirror/docker-hub/library/nginx:1.16") == digest


def test_a_config_in_parameter_store_is_validated_with_its_line_numbers(
    aws, target, write_config, mirror
):
    text = write_config(target, "- nginx:1.16").read_text()
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/mirror/config", Value=text, Type="String")
    assert mirror("validate", config="ssm:/mirror/config").code == 0

    broken = text.replace("images:", "imagez:")
    ssm.put_parameter(Name="/mirror/config", Value=broken, Type="String", Overwrite=True)
    run = mirror("validate", config="ssm:/mirror/config")

    assert run.code == 2
    assert "ssm:/mirror/config:5: imagez: unknown key 'imagez'" in run.err


def test_a_missing_remote_config_is_exit_2_naming_it(aws, mirror):
    run = mirror("sync", config="s3://ops/nope.yaml")

    assert run.code == 2
    assert "cannot read config s3://ops/nope.yaml: NoSuchKey" in run.err
    assert mirror("validate", config="s3://ops").code == 2  # no key: says how to write it


def test_iam_policy_covers_reading_the_config_and_publishing_the_buildspec(aws, mirror):
    text = (
        "version: 1\n"
        "target:\n  registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com\n"
        "daemon:\n  publish_buildspec: {output: s3://ops/mirror/pull.sh}\n"
        "images:\n  - nginx:1.16\n"
    )
    boto3.client("ssm").put_parameter(Name="/mirror/config", Value=text, Type="String")

    policy = json.loads(mirror("iam-policy", config="ssm:/mirror/config").out)

    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadConfig"]["Action"] == ["ssm:GetParameter"]
    assert (
        by_sid["ReadConfig"]["Resource"]
        == "arn:aws:ssm:us-east-1:123456789012:parameter/mirror/config"
    )
    assert by_sid["PublishBuildspec"]["Action"] == ["s3:PutObject"]
    assert by_sid["PublishBuildspec"]["Resource"] == "arn:aws:s3:::ops/mirror/pull.sh"
