"""`mirror prune` against moto's ECS and ECR: what workloads use is kept, exactly the rest
goes with --apply, and nothing moves without it or when ECS cannot be listed."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import boto3
import pytest

from mirror.aws.ecr import ownership_tags
from mirror.config import load_config
from mirror.config.lifecycle import DEFAULT_POLICY
from mirror.engine.wiring import Clients
from mirror.errors import ConfigError
from mirror.service.daemon import Daemon
from tests.support.fake_ecr import ACCOUNT, FakeEcr
from tests.support.images import Image, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
NGINX = "mirror/docker-hub/library/nginx"
REDIS = "mirror/docker-hub/library/redis"
PYTHON = "mirror/docker-hub/library/python"


def manifest(seed: str) -> str:
    layer = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer, "size": 2}
    blob = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 3}
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [blob]}
    )


def put(repository: str, body: str, tag: str | None = None, *, owned: bool = True) -> str:
    """An image in `repository`, created the way mirror creates its own (with the
    ownership tags) unless `owned` is False (another team's, or one from before them)."""
    ecr = boto3.client("ecr")
    tags = [{"Key": k, "Value": v} for k, v in ownership_tags("mirror").items()] if owned else []
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository, tags=tags)
    extra = {"imageTag": tag} if tag else {}
    digest = "sha256:" + hashlib.sha256(body.encode()).hexdigest()  # moto would invent one
    answer = ecr.put_image(
        repositoryName=repository, imageManifest=body, imageDigest=digest, **extra
    )
    return str(answer["image"]["imageId"]["imageDigest"])


def put_index(repository: str, tag: str | None, *children: str) -> str:
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": c, "size": 10} for c in children],
    })  # fmt: skip
    return put(repository, body, tag)


def digests(repository: str) -> set[str]:
    images = boto3.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
    return {i["imageDigest"] for i in images}


def task_definition(family: str, image: str) -> str:
    answer = boto3.client("ecs").register_task_definition(
        family=family,
        containerDefinitions=[{"name": family, "image": image, "memory": 128}],
        requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
    )  # fmt: skip
    return str(answer["taskDefinition"]["taskDefinitionArn"])


def prune_config(tmp_path: Path, ecr: FakeEcr, prune: str = "") -> Path:
    path = tmp_path / "prune.yaml"
    path.write_text(
        "version: 1\n"
        f"target:\n  kind: ecr\n  region: us-east-1\n  registry: {HOST}\n"
        f"  registry_url: {ecr.data_plane.url}\n"
        "prune:\n  keep_days: 0\n  keep_task_definition_revisions: 2\n" + prune +
        'images:\n  - nginx:1.16\n  - image: python\n    tags: ["3.12"]\n'
    )  # fmt: skip
    return path


@pytest.fixture
def estate(ecr: FakeEcr) -> dict[str, str]:
    """The mirror's repositories after a year of use, and the workloads that use them."""
    d = {
        "nginx 1.16": put(NGINX, manifest("a"), "1.16"),
        "nginx 1.14": put(NGINX, manifest("b"), "1.14"),
        "nginx 1.15": put(NGINX, manifest("c"), "1.15"),
        "nginx untagged, running": put(NGINX, manifest("d")),
        "nginx untagged": put(NGINX, manifest("e")),
        "redis 7": put(REDIS, manifest("f"), "7"),
        "redis 6": put(REDIS, manifest("g"), "6"),
        "python 3.11 child in use": put(PYTHON, manifest("i1")),
        "python 3.11 other child": put(PYTHON, manifest("i2")),
        "python 3.12 child": put(PYTHON, manifest("j1")),
        "python 3.10 child a": put(PYTHON, manifest("k1")),
        "python 3.10 child b": put(PYTHON, manifest("k2")),
    }
    d["python 3.11"] = put_index(
        PYTHON, "3.11", d["python 3.11 child in use"], d["python 3.11 other child"]
    )
    d["python 3.12"] = put_index(PYTHON, "3.12", d["python 3.12 child"])
    d["python 3.10"] = put_index(PYTHON, "3.10", d["python 3.10 child a"], d["python 3.10 child b"])
    assert len(set(d.values())) == len(d)

    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="prod")
    old_web = task_definition("web", f"{HOST}/{NGINX}:1.14")  # a service left on an old revision
    for _ in range(3):
        task_definition("web", f"{HOST}/{NGINX}:1.16")
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=old_web, desiredCount=1)
    api = task_definition("api", f"{HOST}/{PYTHON}@{d['python 3.11 child in use']}")
    ecs.create_service(cluster="prod", serviceName="api", taskDefinition=api, desiredCount=1)
    task_definition("cache", "redis:6")  # upstream names, as a Dockerfile-era task writes them
    task_definition("cache", "redis:7")
    task_definition("cache", "redis:7")
    worker = task_definition("worker", f"{HOST}/{NGINX}@{d['nginx untagged, running']}")
    ec2 = boto3.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    ecs.run_task(
        cluster="prod", taskDefinition=worker, launchType="FARGATE", networkConfiguration=network
    )
    ecs.deregister_task_definition(taskDefinition=worker)  # only the running task holds it
    return d


GOES = {"nginx 1.15", "nginx untagged", "redis 6", "python 3.10", "python 3.10 child a",
        "python 3.10 child b"}  # fmt: skip


def test_prune_keeps_what_workloads_use_and_apply_deletes_exactly_the_rest(
    estate, ecr, tmp_path, mirror
):
    config = prune_config(tmp_path, ecr)

    plan = mirror("prune", config=config)

    assert plan.code == 0, plan.err
    lines = {line.split()[1]: line for line in plan.out.splitlines()[:-1]}
    verdicts = {
        name: lines[f"{repo}@{digest[:19]}"].split()[0]
        for name, digest in estate.items()
        for repo in (NGINX, REDIS, PYTHON)
        if f"{repo}@{digest[:19]}" in lines
    }
    assert {n for n, v in verdicts.items() if v == "delete"} == GOES
    assert {n for n, v in verdicts.items() if v == "keep"} == set(estate) - GOES
    why = {name: lines[k] for name in estate for k in lines if estate[name][:19] in k}
    assert "in use by ECS service prod/web (web:1)" in why["nginx 1.14"]
    assert "in use by ECS task prod/" in why["nginx untagged, running"]
    assert "in use by task definition cache:3" in why["redis 7"]
    assert "index of" in why["python 3.11"] and "ECS service prod/api" in why["python 3.11"]
    assert "child of kept index" in why["python 3.11 other child"]
    assert "selected by the config (1.16)" in why["nginx 1.16"]
    assert "repository no longer in the config" in why["redis 6"]
    assert plan.out.splitlines()[-1] == "prune: 6 to delete (add --apply to delete them), 9 kept"
    before = {repo: digests(repo) for repo in (NGINX, REDIS, PYTHON)}
    assert sum(map(len, before.values())) == 15  # the plan deleted nothing

    applied = mirror("prune", "--apply", "--report", str(tmp_path / "prune.json"), config=config)

    assert applied.code == 0, applied.err
    remaining = set().union(*(digests(repo) for repo in (NGINX, REDIS, PYTHON)))
    assert remaining == {estate[n] for n in set(estate) - GOES}
    report = json.loads((tmp_path / "prune.json").read_text())
    assert report["summary"] == {"delete": 6, "keep": 9, "failed": 0}
    assert {i["result"] for i in report["images"] if i["action"] == "delete"} == {"deleted"}


def test_keep_days_spares_recent_pushes(estate, ecr, tmp_path, mirror):
    plan = mirror("prune", "--keep-days", "1", config=prune_config(tmp_path, ecr))

    assert plan.code == 0
    assert plan.out.splitlines()[-1] == "prune: 0 to delete (add --apply to delete them), 15 kept"


def test_a_failure_to_list_ecs_aborts_and_deletes_nothing(
    estate, ecr, tmp_path, mirror, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    before = {repo: digests(repo) for repo in (NGINX, REDIS, PYTHON)}

    run = mirror("prune", "--apply", config=prune_config(tmp_path, ecr))

    assert run.code == 1
    assert "cannot list ECS clusters" in run.err and "nothing was deleted" in run.err
    assert {repo: digests(repo) for repo in (NGINX, REDIS, PYTHON)} == before


def test_with_prune_enabled_mirror_removes_its_blind_untagged_expiry_rule(ecr, tmp_path, mirror):
    put(NGINX, manifest("a"), "1.16")
    ecr_api = boto3.client("ecr")
    ecr_api.put_lifecycle_policy(
        repositoryName=NGINX, lifecyclePolicyText=json.dumps(DEFAULT_POLICY)
    )
    config = load_config(prune_config(tmp_path, ecr, prune="  enabled: true\n"))
    clients = Clients(config)
    try:
        assert clients.ecr is not None
        clients.ecr.ensure_repository(NGINX)
    finally:
        clients.close()

    with pytest.raises(ecr_api.exceptions.LifecyclePolicyNotFoundException):
        ecr_api.get_lifecycle_policy(repositoryName=NGINX)
    policy = json.loads(mirror("iam-policy", config=Path(config.source)).out)
    allowed = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"ecr:DeleteLifecyclePolicy", "ecr:BatchDeleteImage", "ecs:ListServices"} <= allowed
    assert "ecr:PutLifecyclePolicy" not in allowed


def test_the_daemon_prunes_after_a_clean_pass_when_enabled(estate, ecr, hub, seeder, tmp_path):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    path = prune_config(tmp_path, ecr, prune="  enabled: true\n")
    registries = f"registries:\n  docker.io: {{url: {hub.url}}}\nimages:"
    python = '  - image: python\n    tags: ["3.12"]\n'  # dropped: its repository goes too
    path.write_text(path.read_text().replace("images:", registries).replace(python, ""))
    daemon = Daemon(str(path), shard=(0, 1), max_wait=5)

    daemon._run_pass()

    assert daemon.state.last_success is not None
    assert digests(REDIS) == {estate["redis 7"]}  # redis:6 retired, redis:7 still in use
    assert digests(PYTHON) == {estate["python 3.11"]} | {
        estate[f"python 3.11 {child}"] for child in ("child in use", "other child")
    }
    assert "mirror_pruned_images_total 8.0" in daemon.metrics.render().decode()


def test_prune_leaves_repositories_without_the_ownership_tags_alone(ecr, tmp_path, mirror):
    """A repository under the prefix that mirror did not tag (another team's, named into
    the prefix by hand) is never a candidate, however stale its images look."""
    stray = put("mirror/docker-hub/library/busybox", manifest("stray"), "1", owned=False)
    foreign = put("payments/api", manifest("payments"), "v42", owned=False)
    config = prune_config(tmp_path, ecr)

    run = mirror("prune", "--apply", config=config)

    assert run.code == 0, run.err
    assert stray in digests("mirror/docker-hub/library/busybox")
    assert foreign in digests("payments/api")
    assert "busybox" not in run.out and "payments" not in run.out


def test_an_empty_prefix_with_prune_is_refused_unless_repositories_are_listed(ecr, tmp_path):
    path = tmp_path / "open.yaml"
    text = (
        "version: 1\ntarget:\n  kind: ecr\n  region: us-east-1\n  repository_prefix: ''\n"
        "prune: {keep_days: 0}\nimages:\n  - nginx:1.16\n"
    )
    path.write_text(text)
    with pytest.raises(ConfigError, match="every repository in the account"):
        load_config(path)
    path.write_text(
        text.replace("{keep_days: 0}", "{keep_days: 0, repositories: [docker-hub/library/nginx]}")
    )
    assert load_config(path).model.prune is not None


def test_digests_pinned_by_a_protected_lock_or_include_are_kept(estate, ecr, tmp_path, mirror):
    """A lock file and a published include still name digests that fell out of the config:
    builds that fetch them must keep finding them."""
    include = tmp_path / "pull.sh"
    include.write_text(f"mirror_pull {NGINX}@{estate['nginx untagged']} nginx:1.14\n")
    lock = tmp_path / "mirror.lock.json"
    lock.write_text(json.dumps({"version": 1, "registry": HOST, "images": [
        {"source": "docker.io/library/redis:6", "target": f"{HOST}/{REDIS}@{estate['redis 6']}",
         "digest": estate["redis 6"]},
    ]}))  # fmt: skip
    config = prune_config(tmp_path, ecr, prune="  protect: [pull.sh, mirror.lock.json]\n")

    run = mirror("prune", "--apply", config=config)

    assert run.code == 0, run.err
    assert estate["nginx untagged"] in digests(NGINX)
    assert estate["redis 6"] in digests(REDIS)
    assert "pinned by pull.sh" in run.out and "pinned by mirror.lock.json" in run.out
    assert estate["nginx 1.15"] not in digests(NGINX)  # the rest still goes
