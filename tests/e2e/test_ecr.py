"""ECR as the target: moto's control plane and a htpasswd registry as the data plane."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from mirror.config import load_config
from mirror.ecr import Ecr
from mirror.iam import DATA_PLANE_PUSH
from mirror.lifecycle import DEFAULT_POLICY
from mirror.log import setup_logging
from mirror.oci.auth import Credentials
from mirror.sync import SyncOptions, run_pass
from mirror.wiring import Clients
from tests.support import skopeo
from tests.support.ecr_front import EcrFront
from tests.support.fake_ecr import ECR_CREDS, FakeEcr
from tests.support.images import Image, Index, random_blob

pytestmark = pytest.mark.e2e


@pytest.fixture
def console_logs() -> None:
    """In-process passes log as the CLI's default does, whatever a previous test set up."""
    setup_logging("console")


def ecr_config(tmp_path: Path, ecr: FakeEcr, hub_url: str, images: str, repository: str = ""):
    """A kind: ecr config; `repository` is the target's `repository:` block, unindented."""
    lines = [
        "version: 1",
        "target:",
        "  kind: ecr",
        "  region: us-east-1",
        f"  registry_url: {ecr.data_plane.url}",
        *[f"  {line}" for line in textwrap.dedent(repository).strip().splitlines()],
        "registries:",
        f"  docker.io: {{url: {hub_url}}}",
        "images:",
        *[f"  {line}" for line in textwrap.dedent(images).strip().splitlines()],
    ]
    path = tmp_path / "ecr.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_sync_into_ecr_creates_configured_repositories_and_copies_faithfully(
    ecr, hub, seeder, mirror, tmp_path
):
    single = seeder.push("library/nginx", "1.16", Image([random_blob(5000)]))
    index = seeder.push(
        "library/python",
        "3.12",
        Index([Image([random_blob(100)]), Image([random_blob(100)], architecture="arm64")]),
    )
    config = ecr_config(
        tmp_path,
        ecr,
        hub.url,
        "- nginx:1.16\n- python:3.12",
        repository="""
        repository:
          tag_mutability: IMMUTABLE_WITH_EXCLUSION
          tag_mutability_exclusions: [latest]
          scan_on_push: true
          tags: {owner: platform}
        """,
    )

    run = mirror("sync", config=config)

    assert run.code == 0, run.out + run.err
    host = ecr.data_plane.host
    prefix = "mirror/docker-hub/library"
    assert skopeo.raw_digest(host, f"{prefix}/nginx:1.16", ECR_CREDS) == single
    assert skopeo.raw_digest(host, f"{prefix}/python:3.12", ECR_CREDS) == index
    skopeo.copy_all_verifies(host, f"{prefix}/python:3.12", ECR_CREDS)
    assert run.image("nginx:1.16")["target"] == (f"{ecr.host}/mirror/docker-hub/library/nginx:1.16")
    client = boto3.client("ecr")
    repositories = {r["repositoryName"]: r for r in client.describe_repositories()["repositories"]}
    assert set(repositories) == {f"{prefix}/nginx", f"{prefix}/python"}
    for name, repository in repositories.items():
        assert repository["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        policy = client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
        assert json.loads(policy) == DEFAULT_POLICY
        tags = client.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
        assert tags == [  # mirror's ownership tags (prune touches nothing else), then the config's
            {"Key": "managed-by", "Value": "mirror"},
            {"Key": "mirror-prefix", "Value": "mirror"},
            {"Key": "owner", "Value": "platform"},
        ]


def test_existing_repositories_are_reconciled_but_encryption_is_only_reported(
    ecr, hub, seeder, tmp_path, capsys, console_logs
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    client = boto3.client("ecr")
    name = "mirror/docker-hub/library/nginx"
    client.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": False},
        encryptionConfiguration={"encryptionType": "KMS"},
    )
    config = load_config(ecr_config(tmp_path, ecr, hub.url, "- nginx:1.16"))
    clients = Clients(config)
    try:
        report = run_pass(config, clients, SyncOptions())
    finally:
        clients.close()

    assert report.images[0].action == "copied"
    (repository,) = client.describe_repositories(repositoryNames=[name])["repositories"]
    assert repository["imageTagMutability"] == "MUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    assert json.loads(policy) == DEFAULT_POLICY
    err = capsys.readouterr().err
    assert "repository_reconciled" in err and "repository_encryption_differs" in err


def test_an_expired_token_is_fetched_once_and_a_401_refreshes_it(
    ecr, hub, seeder, tmp_path, monkeypatch
):
    for i in range(3):
        seeder.push(f"library/img{i}", "1", Image([random_blob(1000)]))
    config = load_config(ecr_config(tmp_path, ecr, hub.url, "- img0:1\n- img1:1\n- img2:1"))
    real = Ecr.authorization
    handed_out: list[str] = []

    def first_one_is_stale(self: Ecr) -> tuple[Credentials, float | None]:
        credentials, expires = real(self)
        if not handed_out:  # as if the 12-hour token had been revoked mid-run
            credentials = Credentials(credentials.username, "revoked-token")
        handed_out.append(credentials.password)
        return credentials, expires

    monkeypatch.setattr(Ecr, "authorization", first_one_is_stale)
    clients = Clients(config)
    try:
        report = run_pass(config, clients, SyncOptions())
    finally:
        clients.close()

    assert [r.action for r in report.images] == ["copied"] * 3
    # moto's token "expired" in 2015: it is still fetched only when a 401 says so.
    assert handed_out == ["revoked-token", f"{ECR_CREDS.split(':')[1]}"]


def test_a_bad_lifecycle_file_is_a_config_error_naming_its_line(ecr, hub, tmp_path, mirror):
    (tmp_path / "policy.json").write_text(
        json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged"}}]})
    )
    config = ecr_config(
        tmp_path,
        ecr,
        hub.url,
        "- nginx:1.16",
        repository="repository:\n  lifecycle_policy: policy.json\n",
    )

    run = mirror("sync", config=config)

    assert run.code == 2
    assert "ecr.yaml:7: target.repository.lifecycle_policy" in run.err
    assert "tagStatus tagged needs tagPrefixList or tagPatternList" in run.err
    assert boto3.client("ecr").describe_repositories()["repositories"] == []


def test_the_iam_policy_lists_exactly_the_aws_calls_a_sync_makes(
    ecr, hub, seeder, tmp_path, mirror
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    seeder.push("library/redis", "7", Image([random_blob(100)]))
    boto3.client("ecr").create_repository(  # drift, so every reconcile call is made
        repositoryName="mirror/docker-hub/library/redis",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": False},
    )
    path = ecr_config(
        tmp_path, ecr, hub.url, "- nginx:1.16\n- redis:7", repository="repository: {tags: {a: b}}"
    )
    config = load_config(path)
    clients = Clients(config)
    called: set[str] = set()

    def record(event_name: str, **_: object) -> None:
        _, service, operation = event_name.split(".")
        called.add(f"{service}:{operation}")

    for client in clients.aws_clients:
        client.meta.events.register("before-call.*.*", record)
    try:
        report = run_pass(config, clients, SyncOptions())
    finally:
        clients.close()
    assert [r.action for r in report.images] == ["copied", "copied"]

    printed = mirror("iam-policy", config=path)

    policy = json.loads(printed.out)
    allowed = {action for statement in policy["Statement"] for action in statement["Action"]}
    control_plane = allowed - DATA_PLANE_PUSH
    assert called - {"sts:GetCallerIdentity"} == control_plane
    (repositories,) = [s for s in policy["Statement"] if s["Sid"] == "MirrorRepositories"]
    # No target.registry: the account comes from STS, never a "*".
    assert repositories["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/mirror/*"


def test_pull_through_cache_images_are_served_by_a_rule_and_the_rest_are_copied(
    ecr, hub, seeder, tmp_path, mirror
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    path = ecr_config(
        tmp_path, ecr, hub.url, "- nginx:1.16\n- quay.io/prometheus/node-exporter:v1.8.2"
    )
    text = path.read_text().replace(
        "registries:\n", "registries:\n  quay.io: {mode: pull-through-cache}\n"
    )
    path.write_text(text)

    plan = mirror("plan", config=path)

    assert plan.code == 0, plan.err
    served = plan.image("node-exporter:v1.8.2")
    assert served["action"] == "pull-through-cache"
    assert served["target"] == f"{ecr.host}/mirror/quay/prometheus/node-exporter:v1.8.2"
    assert plan.image("nginx:1.16")["action"] == "would-copy"
    policy = json.loads(mirror("iam-policy", config=path).out)
    assert "PullThroughCacheRules" in {s["Sid"] for s in policy["Statement"]}

    config = load_config(path)
    clients = Clients(config)
    assert clients.ptc is not None
    ptc_ecr = boto3.client("ecr")
    with Stubber(ptc_ecr) as stub:  # moto has no pull-through-cache APIs
        stub.add_response(
            "describe_pull_through_cache_rules",
            {"pullThroughCacheRules": [
                {"ecrRepositoryPrefix": "mirror/quay", "upstreamRegistryUrl": "quay.io"}]},
            {"ecrRepositoryPrefixes": ["mirror/quay"]},
        )  # fmt: skip
        stub.add_response(
            "describe_repository_creation_templates",
            {"repositoryCreationTemplates": [{"prefix": "mirror/quay"}]},
            {"prefixes": ["mirror/quay"]},
        )
        stub.add_response("update_repository_creation_template", {}, None)
        stub.add_response(
            "validate_pull_through_cache_rule",
            {"isValid": True},
            {"ecrRepositoryPrefix": "mirror/quay"},
        )
        clients.ptc._ecr = ptc_ecr
        try:
            report = run_pass(config, clients, SyncOptions())
        finally:
            clients.close()
        stub.assert_no_pending_responses()

    actions = {r.source: r.action for r in report.images}
    assert actions == {
        "docker.io/library/nginx:1.16": "copied",
        "quay.io/prometheus/node-exporter:v1.8.2": "pull-through-cache",
    }


def ecr_behind_front(tmp_path, ecr, front, hub, images, repository=""):
    path = ecr_config(tmp_path, ecr, hub.url, images, repository)
    path.write_text(path.read_text().replace(ecr.data_plane.url, front.url))
    return path


def test_throttled_put_image_is_retried_and_the_sync_completes(ecr, hub, seeder, tmp_path, mirror):
    for i in range(3):
        seeder.push(f"library/img{i}", "1", Image([random_blob(1000)]))
    with EcrFront(ecr.data_plane.url) as front:
        front.throttle_puts = 2
        path = ecr_behind_front(tmp_path, ecr, front, hub, "- img0:1\n- img1:1\n- img2:1")

        run = mirror("sync", config=path)

    assert run.code == 0, run.out + run.err
    assert front.throttled == 2
    assert [i["action"] for i in run.report["images"]] == ["copied"] * 3


def test_an_immutable_tag_that_moved_upstream_fails_with_a_hint(ecr, hub, seeder, tmp_path, mirror):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    with EcrFront(ecr.data_plane.url) as front:
        front.immutable = True
        path = ecr_behind_front(
            tmp_path, ecr, front, hub, "- nginx:1.16", "repository: {tag_mutability: IMMUTABLE}"
        )
        assert mirror("sync", config=path).code == 0
        seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))

        run = mirror("sync", config=path)

    assert run.code == 1
    error = run.image("nginx:1.16")["error"]
    assert error["code"] == "IMMUTABLE_TAG"
    assert "IMMUTABLE_WITH_EXCLUSION" in error["hint"] and "[1.16]" in error["hint"]


def test_a_repository_near_its_image_quota_is_warned_about(
    ecr, hub, seeder, tmp_path, monkeypatch, capsys, console_logs
):
    monkeypatch.setattr("mirror.ecr.IMAGES_PER_REPOSITORY", 2)
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    name = "mirror/docker-hub/library/nginx"
    client = boto3.client("ecr")
    client.create_repository(repositoryName=name)
    for tag in ("old-1", "old-2"):  # moto lists what its own API was told, not the data plane
        image = Image([random_blob(10)])
        client.put_image(
            repositoryName=name,
            imageManifest=image.manifest.decode(),
            imageTag=tag,
            imageDigest=image.digest,
        )
    config = load_config(ecr_config(tmp_path, ecr, hub.url, "- nginx:1.16"))
    clients = Clients(config)
    try:
        run_pass(config, clients, SyncOptions())
    finally:
        clients.close()

    err = capsys.readouterr().err
    assert "repository_near_image_quota" in err and "mirror/docker-hub/library/nginx" in err
