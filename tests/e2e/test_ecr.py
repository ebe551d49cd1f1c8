"""ECR as the target: moto's control plane and a htpasswd registry as the data plane."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from mirror.aws.ecr import Ecr
from mirror.aws.iam import DATA_PLANE_PUSH
from mirror.config import load_config
from mirror.config.lifecycle import DEFAULT_POLICY
from mirror.console.log import setup_logging
from mirror.engine.sync import SyncOptions, run_pass
from mirror.engine.wiring import Clients
from mirror.oci.credentials import Credentials
from mirror.prune import restore_after_pass
from tests.support import skopeo
from tests.support.ecr_front import EcrFront
from tests.support.fake_ecr import ACCOUNT, ECR_CREDS, FakeEcr
from tests.support.images import Image, Index, attach_signature_and_sbom, random_blob
from tests.support.registry import LocalRegistry

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
    adopt = "repository: {adopt_existing: true}"  # someone else's: taken over when asked
    config = load_config(ecr_config(tmp_path, ecr, hub.url, "- nginx:1.16", adopt))
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
        tmp_path,
        ecr,
        hub.url,
        "- nginx:1.16\n- redis:7",
        repository="repository: {tags: {a: b}, adopt_existing: true}",
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
        restore_after_pass(config, clients, report)  # as `mirror sync` does
    finally:
        clients.close()
    assert [r.action for r in report.images] == ["copied", "copied"]

    printed = mirror("iam-policy", config=path)

    policy = json.loads(printed.out)
    allowed = {action for statement in policy["Statement"] for action in statement["Action"]}
    control_plane = allowed - DATA_PLANE_PUSH
    # Called only when an archived image is found (tests/unit/test_restore.py makes them):
    # restoring it, and asking which workloads still pin it.
    (in_use,) = [s for s in policy["Statement"] if s["Sid"] == "ImagesInUse"]
    on_archive = {"ecr:UpdateImageStorageClass", *in_use["Action"]}
    assert called - {"sts:GetCallerIdentity"} == control_plane - on_archive
    assert on_archive <= control_plane
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
    monkeypatch.setattr("mirror.aws.ecr.IMAGES_PER_REPOSITORY", 2)
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


def test_pull_access_lets_member_accounts_pull_and_keeps_other_statements(
    ecr, hub, seeder, mirror, tmp_path
):
    seeder.push("library/nginx", "1.16", Image([random_blob(500)]))
    seeder.push("library/redis", "7", Image([random_blob(500)]))
    client = boto3.client("ecr")
    existing = "mirror/docker-hub/library/redis"  # someone already shared it with a CI account
    client.create_repository(repositoryName=existing)
    theirs = {
        "Sid": "TheirCi",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
        "Action": ["ecr:BatchGetImage"],
    }
    client.set_repository_policy(
        repositoryName=existing,
        policyText=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}),
    )
    config = ecr_config(
        tmp_path,
        ecr,
        hub.url,
        "- nginx:1.16\n- redis:7",
        repository="""
        repository:
          pull_access: {organization_id: o-a1b2c3d4e5, accounts: ["111122223333"]}
          adopt_existing: true
        """,
    )

    assert mirror("sync", config=config).code == 0

    pull = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    for name in ("mirror/docker-hub/library/nginx", existing):
        policy = json.loads(client.get_repository_policy(repositoryName=name)["policyText"])
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        org = by_sid["MirrorPullAccess"]
        assert org["Principal"] == "*" and sorted(org["Action"]) == pull
        assert org["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}
        accounts = by_sid["MirrorPullAccessAccounts"]
        assert accounts["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root"]}
    kept = json.loads(client.get_repository_policy(repositoryName=existing)["policyText"])
    assert theirs in kept["Statement"]  # another owner's statement survives

    drifted = {**kept, "Statement": [theirs]}  # someone removed mirror's statements by hand
    client.set_repository_policy(repositoryName=existing, policyText=json.dumps(drifted))
    seeder.push("library/redis", "7", Image([random_blob(500)]))  # a new write reconciles it
    assert mirror("sync", config=config).code == 0
    restored = json.loads(client.get_repository_policy(repositoryName=existing)["policyText"])
    assert {s["Sid"] for s in restored["Statement"]} == {
        "TheirCi", "MirrorPullAccess", "MirrorPullAccessAccounts"
    }  # fmt: skip


def test_the_consumer_policy_is_what_a_member_accounts_build_role_needs(ecr, mirror, tmp_path):
    config = ecr_config(tmp_path, ecr, "http://127.0.0.1:1", "- nginx:1.16")

    run = mirror("iam-policy", "--consumer", config=config)

    assert run.code == 0, run.err
    statements = {s["Sid"]: s for s in json.loads(run.out)["Statement"]}
    assert statements["EcrLogin"]["Action"] == ["ecr:GetAuthorizationToken"]
    assert statements["PullTheMirror"]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/mirror/*"
    ]


def replicated_config(tmp_path, ecr, hub_url, ireland, images: str = "- nginx:1.16") -> Path:
    """Replicas in eu-west-1 (this account; its data plane is `ireland`) and in
    ap-northeast-1 in another account."""
    config = ecr_config(tmp_path, ecr, hub_url, images)
    text = config.read_text().replace(
        "  region: us-east-1\n",
        "  region: us-east-1\n  replicate_to:\n"
        f"    - {{region: eu-west-1, registry_url: {ireland.url}}}\n"
        '    - {region: ap-northeast-1, account: "444455556666"}\n',
    )
    config.write_text(text)
    return config


def test_replication_is_configured_for_the_prefix_with_each_destination(
    ecr, hub, seeder, mirror, tmp_path, monkeypatch
):
    # moto has no repository creation templates and takes one replication rule only:
    # tests/unit/test_replication.py checks the templates, and that other owners' rules
    # are kept, against the real ECR model with botocore's Stubber.
    templates: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "mirror.aws.replication.ensure_template",
        lambda client, template: templates.append((client.meta.region_name, template)),
    )
    seeder.push("library/nginx", "1.16", Image([random_blob(500)]))
    client = boto3.client("ecr")
    with LocalRegistry(htpasswd=("AWS", f"{ACCOUNT}-auth-token")) as ireland:
        config = replicated_config(tmp_path, ecr, hub.url, ireland)
        first = mirror("sync", config=config)
        assert first.code == 0, first.out + json.dumps(first.report.get("errors"))
        assert mirror("sync", config=config).code == 0  # idempotent

    (rule,) = client.describe_registry()["replicationConfiguration"]["rules"]
    assert rule == {
        "destinations": [
            {"region": "eu-west-1", "registryId": "123456789012"},
            {"region": "ap-northeast-1", "registryId": "444455556666"},
        ],
        "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}],
    }
    assert {region for region, _ in templates} == {"eu-west-1"}  # this account's replica only
    assert templates[0][1]["appliedFor"] == ["REPLICATION"]
    policy = json.loads(mirror("iam-policy", config=config).out)
    sids = {s["Sid"] for s in policy["Statement"]}
    assert {"Replication", "ReplicationServiceRole"} <= sids
    destination = json.loads(mirror("iam-policy", "--destination", config=config).out)
    (statement,) = destination["444455556666"]["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statement["Action"] == ["ecr:CreateRepository", "ecr:ReplicateImage"]


def test_a_referrer_ecr_refuses_with_405_is_a_warning_on_an_image_in_place(
    ecr, hub, seeder, tmp_path, mirror
):
    image = Image([random_blob(300)])
    digest = seeder.push("library/app", "1.0", image)
    attach_signature_and_sbom(seeder, "library/app", image)
    with EcrFront(ecr.data_plane.url) as front:
        front.refuse_subject = True
        path = ecr_behind_front(
            tmp_path, ecr, front, hub, "- image: app\n  tags: ['1.0']\n  artifacts: {}"
        )

        run = mirror("sync", config=path)

    assert run.code == 0, run.out + run.err
    result = run.image("app:1.0")
    assert result["action"] == "copied" and result["target_digest"] == digest
    assert result["artifacts_error"]["code"] == "UNSUPPORTED"
    assert "does not take OCI 1.1 referrers" in result["artifacts_error"]["hint"]
    assert "warning: artifacts not copied" in run.out


def test_a_replica_gets_what_was_mirrored_before_its_rule_existed(
    ecr, hub, seeder, tmp_path, mirror, monkeypatch
):
    monkeypatch.setattr("mirror.aws.replication.ensure_template", lambda client, template: None)
    index = seeder.push(
        "library/python",
        "3.12",
        Index([Image([random_blob(200)]), Image([random_blob(200)], architecture="arm64")]),
    )
    name = "mirror/docker-hub/library/python"
    with LocalRegistry(htpasswd=("AWS", f"{ACCOUNT}-auth-token")) as ireland:
        config = replicated_config(tmp_path, ecr, hub.url, ireland, "- python:3.12")

        first = mirror("sync", config=config)  # a new push: ECR's replication takes it

        assert first.code == 0, first.out
        assert first.report["replicas_filled"] == []
        hub.reset_counters()

        second = mirror("sync", config=config)  # unchanged: nothing pushed, nothing replicated

        assert second.code == 0, second.out + json.dumps(second.report["errors"])
        assert second.report["replicas_filled"] == [
            {"replica": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
             "image": f"{ecr.host}/{name}:3.12", "digest": index}
        ]  # fmt: skip
        assert hub.counters.manifest_gets == 0  # from the primary, not upstream
        assert skopeo.raw_digest(ireland.host, f"{name}:3.12", ECR_CREDS) == index
        skopeo.copy_all_verifies(ireland.host, f"{name}:3.12", ECR_CREDS)
        ireland_ecr = boto3.client("ecr", region_name="eu-west-1")
        (repository,) = ireland_ecr.describe_repositories(repositoryNames=[name])["repositories"]
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}

        third = mirror("sync", config=config)

        assert third.code == 0 and third.report["replicas_filled"] == []
