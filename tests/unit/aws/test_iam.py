"""`mirror iam-policy`: no `*` account, no `*` resource where a narrower one exists."""

import json

import pytest

from mirror.console.cli import main

ACCOUNT = "111122223333"
# Statements whose actions take no resource ARN (GetAuthorizationToken, the ECS and Lambda
# listings prune reads), or whose resource-level support mirror does not rely on (the
# pull-through-cache rule and creation-template calls).
NEEDS_STAR = {
    "EcrLogin",
    "ImagesInUse",
    "PruneImagesInUse",
    "PullThroughCacheRules",
    "RegistrySettings",
}

CONFIG = """\
version: 1
target:
  kind: ecr
  region: eu-west-1
  repository:
    encryption: {type: KMS, kms_key: alias/mirror}
registries:
  docker.io:
    credentials:
      secret_arn: arn:aws:secretsmanager:eu-west-1:111122223333:secret:mirror/dockerhub
  ghcr.io:
    mode: pull-through-cache
    credentials: {username_env: GH_USER, password_env: GH_TOKEN}
prune: {keep_days: 7}
images:
  - nginx:1.16
  - ghcr.io/org/tool:1
"""


@pytest.fixture
def policy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GH_USER", "bot")
    monkeypatch.setenv("GH_TOKEN", "ghp_x")

    def run(*args: str, text: str = CONFIG) -> tuple[int, dict, str]:
        path = tmp_path / "mirror.yaml"
        path.write_text(text)
        code = main(["iam-policy", "--config", str(path), *args])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 and out.strip() else {}), err

    return run


def resources(document: dict) -> dict[str, list[str]]:
    found = {}
    for statement in document["Statement"]:
        value = statement["Resource"]
        found[statement["Sid"]] = value if isinstance(value, list) else [value]
    return found


def test_no_wildcard_account_and_no_wildcard_resource_where_a_narrower_one_exists(policy):
    code, document, _ = policy("--account", ACCOUNT)

    assert code == 0
    for sid, arns in resources(document).items():
        for arn in arns:
            if arn == "*":
                assert sid in NEEDS_STAR, sid
                continue
            fields = arn.split(":")
            assert fields[4] == ACCOUNT and fields[3] == "eu-west-1", (sid, arn)


def test_a_kms_alias_is_matched_through_the_keys_that_carry_it(policy):
    _, document, _ = policy("--account", ACCOUNT)
    (kms,) = [s for s in document["Statement"] if s["Sid"] == "RepositoryEncryptionKey"]
    assert kms["Resource"] == f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/*"
    assert kms["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": "alias/mirror"}
    assert kms["Condition"]["StringEquals"] == {"kms:ViaService": "ecr.eu-west-1.amazonaws.com"}


def test_a_partial_secret_arn_gets_the_six_character_suffix_and_a_warning(policy):
    _, document, err = policy("--account", ACCOUNT)
    (secret,) = [s for s in document["Statement"] if s["Sid"] == "UpstreamCredentials"]
    assert secret["Resource"] == [
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mirror/dockerhub-??????"
    ]
    assert "partial secret ARN" in err


def test_pull_through_cache_secrets_are_only_the_ones_mirror_writes(policy):
    _, document, _ = policy("--account", ACCOUNT)
    (ptc,) = [s for s in document["Statement"] if s["Sid"] == "PullThroughCacheSecrets"]
    assert ptc["Resource"] == [
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:ecr-pullthroughcache/mirror-github-??????"
    ]
    assert "secretsmanager:GetSecretValue" not in ptc["Action"]


def test_prune_deletes_only_in_repositories_tagged_as_mirrors(policy):
    _, document, _ = policy("--account", ACCOUNT)
    (delete,) = [s for s in document["Statement"] if s["Sid"] == "PruneDeleteImages"]
    assert delete["Condition"] == {"StringEquals": {"aws:ResourceTag/managed-by": "mirror"}}


def test_without_registry_account_or_credentials_it_says_pass_account(policy, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata lookup
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    code, _, err = policy()

    assert code == 2
    assert "--account" in err


def test_the_registry_names_the_account(policy):
    text = CONFIG.replace(
        "  region: eu-west-1\n", f"  registry: {ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com\n"
    )
    code, document, _ = policy(text=text)
    assert code == 0
    assert all(
        ACCOUNT in arn or arn == "*" for arns in resources(document).values() for arn in arns
    )


def test_a_config_that_needs_no_aws_asks_no_account(policy, capsys, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # STS must not be asked
    target = "target: {kind: registry, registry_url: 'http://127.0.0.1:5002'}\n"
    text = f"version: 1\n{target}images: [nginx:1.16]\n"

    code, _, err = policy(text=text)

    assert code == 0 and "needs no AWS permissions" in err


@pytest.mark.parametrize(
    ("region", "partition"),
    [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn"), ("eu-west-1", "aws")],
)
def test_every_arn_is_in_the_partition_of_the_targets_region(policy, region, partition):
    given = CONFIG.replace("arn:aws:", f"arn:{partition}:")  # the user's own ARNs, as written
    text = given.replace("eu-west-1", region).replace(
        "    encryption: {type: KMS, kms_key: alias/mirror}\n",
        "    encryption: {type: KMS, kms_key: alias/mirror}\n"
        "    pull_access: {accounts: ['444455556666']}\n",
    )
    code, document, err = policy("--account", ACCOUNT, text=text)

    assert code == 0, err
    arns = [r for rs in resources(document).values() for r in rs if r.startswith("arn:")]
    assert arns and all(r.startswith(f"arn:{partition}:") for r in arns), arns


def test_pull_access_names_accounts_in_the_repositories_partition():
    from mirror.aws.access import pull_statements
    from mirror.config.model import PullAccess

    (statement,) = pull_statements(PullAccess(accounts=["444455556666"]), "aws-cn")
    assert statement["Principal"] == {"AWS": ["arn:aws-cn:iam::444455556666:root"]}


def test_an_ecr_upstream_rule_may_pass_its_role_and_no_other(policy):
    role = "arn:aws:iam::111122223333:role/mirror-upstream"
    text = f"""\
version: 1
target: {{kind: ecr, registry: 111122223333.dkr.ecr.eu-west-1.amazonaws.com}}
registries:
  444455556666.dkr.ecr.eu-west-1.amazonaws.com: {{mode: pull-through-cache, role_arn: {role}}}
images:
  - 444455556666.dkr.ecr.eu-west-1.amazonaws.com/team/app:1
"""
    code, document, err = policy(text=text)

    assert code == 0, err
    assert resources(document)["PullThroughCacheUpstreamRole"] == [role]


def test_the_consumer_policy_names_each_replica_in_its_own_account(policy):
    text = """\
version: 1
target:
  kind: ecr
  registry: 111122223333.dkr.ecr.us-east-1.amazonaws.com
  replicate_to:
    - region: eu-west-1
    - {region: ap-northeast-1, account: "444455556666"}
images:
  - nginx:1.16
"""
    code, document, err = policy("--consumer", text=text)

    assert code == 0, err
    assert resources(document)["PullTheMirror"] == [
        "arn:aws:ecr:us-east-1:111122223333:repository/mirror/*",
        "arn:aws:ecr:eu-west-1:111122223333:repository/mirror/*",
        "arn:aws:ecr:ap-northeast-1:444455556666:repository/mirror/*",
    ]


def test_without_a_region_the_region_is_named_not_sts(policy, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    text = CONFIG.replace("  region: eu-west-1\n", "")

    code, _, err = policy(text=text)

    assert code == 2
    assert "the target's Region is unknown (set target.region (or AWS_REGION))" in err
    assert "STS" not in err


def test_coordination_grants_the_table_and_only_it(policy):
    text = CONFIG.replace("prune:", "coordination: {dynamodb_table: mirror-state}\nprune:")
    code, document, _ = policy("--account", ACCOUNT, text=text)
    assert code == 0
    (statement,) = [s for s in document["Statement"] if s["Sid"] == "Coordination"]
    assert statement["Resource"] == f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/mirror-state"
    assert all(action.startswith("dynamodb:") for action in statement["Action"])
    assert {"dynamodb:UpdateItem", "dynamodb:Query"} <= set(statement["Action"])
    _, without, _ = policy("--account", ACCOUNT)
    assert "Coordination" not in {s["Sid"] for s in without["Statement"]}


ON_DEMAND = """\
version: 1
target: {kind: ecr, registry: 111122223333.dkr.ecr.eu-west-1.amazonaws.com}
coordination: {dynamodb_table: mirror-state}
on_demand: {allow: [docker.io/library/*]}
images: [nginx:1.16]
"""


@pytest.mark.parametrize(
    ("queue", "arn"),
    [
        (
            "https://sqs.us-east-2.amazonaws.com/444455556666/misses",
            "arn:aws:sqs:us-east-2:444455556666:misses",  # the queue's Region and account
        ),
        (
            "https://vpce-0a1b.sqs.eu-west-1.vpce.amazonaws.com/111122223333/misses",
            "arn:aws:sqs:eu-west-1:111122223333:misses",  # an endpoint: the config's Region
        ),
    ],
)
def test_copy_on_miss_lets_builds_send_and_the_daemon_receive_on_that_queue_only(
    policy, monkeypatch, queue, arn
):
    monkeypatch.setenv("MIRROR_ON_DEMAND_QUEUE_URL", queue)  # what the template passes

    code, daemon, err = policy(text=ON_DEMAND)
    assert code == 0, err
    (receive,) = [s for s in daemon["Statement"] if s["Sid"] == "OnDemandQueue"]
    assert (receive["Action"], receive["Resource"]) == (
        ["sqs:ReceiveMessage", "sqs:DeleteMessage"], arn
    )  # fmt: skip

    code, consumer, err = policy("--consumer", text=ON_DEMAND)
    assert code == 0, err
    (send,) = [s for s in consumer["Statement"] if s["Sid"] == "ReportMisses"]
    assert (send["Action"], send["Resource"]) == (["sqs:SendMessage"], arn)
    assert not any("sqs:ReceiveMessage" in s["Action"] for s in consumer["Statement"])


def test_without_on_demand_nobody_gets_a_queue(policy):
    code, daemon, err = policy("--account", ACCOUNT)
    assert code == 0, err
    code, consumer, err = policy("--consumer", "--account", ACCOUNT)
    assert code == 0, err
    actions = [a for d in (daemon, consumer) for s in d["Statement"] for a in s["Action"]]
    assert not [a for a in actions if a.startswith("sqs:")]
