"""`mirror iam-policy`: no `*` account, no `*` resource where a narrower one exists."""

import json

import pytest

from mirror.cli import main

ACCOUNT = "111122223333"
# Statements whose actions take no resource ARN (GetAuthorizationToken, the ECS and Lambda
# listings prune reads), or whose resource-level support mirror does not rely on (the
# pull-through-cache rule and creation-template calls).
NEEDS_STAR = {"EcrLogin", "PruneImagesInUse", "PullThroughCacheRules"}

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
