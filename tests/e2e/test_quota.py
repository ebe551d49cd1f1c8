"""Quota economy against the Docker-Hub-like front: wait for windows, never collect 429s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import skopeo
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry, free_port

pytestmark = pytest.mark.e2e

HUB_PREFIX = "mirror/docker-hub/library"


@pytest.fixture
def other() -> Iterator[LocalRegistry]:
    """A second upstream (standing in for quay.io) with no rate limit."""
    with LocalRegistry() as registry:
        yield registry


def seed_hub(seeder, count: int) -> dict[str, str]:
    return {
        f"img{i}:1": seeder.push(f"library/img{i}", "1", Image([random_blob(50_000)]))
        for i in range(count)
    }


def config_for(write_config, target, hub, images, extra: str = "", **kwargs):
    return write_config(
        target,
        "\n".join(f"- {image}" for image in images),
        extra=f"registries:\n  docker.io:\n    url: {hub.url}\n{extra}",
        **kwargs,
    )


def test_a_rate_limited_pass_waits_for_the_window_while_other_registries_go_on(
    hub, target, seeder, other, mirror, write_config
):
    hub.limit, hub.window = 3, 12
    expected = seed_hub(seeder, 6)
    quay = {}
    for name in ("q0", "q1"):
        quay[name] = Seeder(other.url).push(f"team/{name}", "1", Image([random_blob(5000)]))
    config = config_for(
        write_config, target, hub,
        [*expected, "quay.io/team/q0:1", "quay.io/team/q1:1"],
        extra=f"  quay.io:\n    url: {other.url}\n",
    )  # fmt: skip

    started = time.monotonic()
    run = mirror("sync", config=config)
    elapsed = time.monotonic() - started

    assert run.code == 0, run.out
    assert hub.counters.rejected_429 == 0
    assert hub.counters.manifest_gets == 6
    for ref, digest in expected.items():
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/{ref}") == digest
    for name, digest in quay.items():
        assert skopeo.raw_digest(target.host, f"mirror/quay/team/{name}:1") == digest
        assert run.image(f"team/{name}:1")["finished_after"] < 6  # long before the window ends
    assert 12 <= elapsed < 23  # two windows: the theoretical minimum is one wait of 12 s
    usage = {r["registry"]: r for r in run.report["registries"]}
    assert usage["docker.io"]["pulls"] == 6 and usage["docker.io"]["waited_seconds"] > 6
    assert "docker.io: pulls anonymous: 6; waited" in run.out


@pytest.mark.parametrize("retry_after", [None, 2])
def test_a_429_before_the_headers_say_so_is_waited_out(
    hub, target, seeder, mirror, write_config, retry_after
):
    hub.limit, hub.window, hub.enforced_limit, hub.retry_after = 5, 6, 2, retry_after
    expected = seed_hub(seeder, 4)
    config = config_for(write_config, target, hub, expected)

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert hub.counters.rejected_429 >= 1
    assert [i["action"] for i in run.report["images"]] == ["copied"] * 4
    for ref, digest in expected.items():
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/{ref}") == digest


def test_headers_that_overclaim_cost_one_429_and_are_read_lower_afterwards(
    hub, target, seeder, mirror, write_config
):
    """Shared egress IPs (CodeBuild, NAT): other clients spend the quota between our
    requests, so `ratelimit-remaining` says 2 more than is left, with no Retry-After."""
    hub.limit, hub.window, hub.enforced_limit = 5, 6, 3
    expected = seed_hub(seeder, 8)
    config = config_for(write_config, target, hub, expected)
    started = time.monotonic()

    run = mirror("sync", config=config)

    assert run.code == 0, run.out
    assert hub.counters.rejected_429 <= 2  # one teaches (a window boundary may add one)
    assert hub.counters.manifest_gets == 8
    for ref, digest in expected.items():
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/{ref}") == digest
    assert time.monotonic() - started < 3 * 6 + 6  # 3 windows, and within one of that
    (usage,) = run.report["registries"]
    assert usage["credentials"][0]["headers_overclaim"] == 2


def test_max_wait_shorter_than_the_window_defers_and_the_next_run_finishes(
    hub, target, seeder, mirror, write_config
):
    hub.limit, hub.window = 2, 6
    expected = seed_hub(seeder, 4)
    config = config_for(write_config, target, hub, expected)

    first = mirror("sync", "--max-wait", "2s", config=config)

    assert first.code == 0, first.out
    actions = sorted(i["action"] for i in first.report["images"])
    assert actions == ["copied", "copied", "deferred", "deferred"]
    deferred = [i for i in first.report["images"] if i["action"] == "deferred"]
    assert all(i["error"]["code"] == "QUOTA_DEFERRED" for i in deferred)
    assert first.report["summary"]["deferred"] == 2
    assert hub.counters.rejected_429 == 0
    time.sleep(hub.window)

    second = mirror("sync", "--max-wait", "2s", config=config)

    assert second.code == 0
    assert sorted(i["action"] for i in second.report["images"]) == [
        "copied", "copied", "skipped", "skipped"
    ]  # fmt: skip
    for ref, digest in expected.items():
        assert skopeo.raw_digest(target.host, f"{HUB_PREFIX}/{ref}") == digest


def test_reserve_is_never_spent(hub, target, seeder, mirror, write_config):
    hub.limit, hub.window = 4, 600
    expected = seed_hub(seeder, 3)
    config = config_for(write_config, target, hub, expected, extra="    rate_limit: {reserve: 2}\n")

    run = mirror("sync", "--max-wait", "1s", config=config)

    assert run.code == 0
    assert hub.counters.manifest_gets == 2
    assert run.report["summary"]["deferred"] == 1


def test_authenticated_pulls_use_the_account_and_its_limits(
    hub, target, seeder, mirror, write_config, monkeypatch
):
    hub.limit = 3
    hub.accounts["ci-bot"] = "dckr_pat_1"
    hub.account_limits["ci-bot"] = 50
    monkeypatch.setenv("HUB_USER", "ci-bot")
    monkeypatch.setenv("HUB_TOKEN", "dckr_pat_1")
    expected = seed_hub(seeder, 4)
    creds = "    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}\n"
    config = config_for(write_config, target, hub, expected, extra=creds)

    run = mirror("sync", config=config)

    assert run.code == 0
    assert {account for account, _ in hub._tokens.values()} == {"ci-bot"}
    (usage,) = run.report["registries"]
    assert usage["credentials"] == [
        {"credential": "account ci-bot", "pulls": 4, "limit": 50, "remaining": 46,
         "window_seconds": 21600.0, "headers_overclaim": 0}
    ]  # fmt: skip

    monkeypatch.setenv("HUB_TOKEN", "wrong-token")
    refused = mirror("sync", config=config)

    assert refused.code == 1
    for image in refused.report["images"]:
        assert image["error"]["code"] == "UNAUTHORIZED"
        assert image["error"]["message"].startswith("docker.io: token request")
        assert "ci-bot" in image["error"]["message"]
    assert "wrong-token" not in refused.out + refused.err


def test_a_credential_pool_spends_each_account_in_turn_without_waiting(
    hub, target, seeder, mirror, write_config, monkeypatch
):
    hub.limit, hub.window = 0, 600
    for user in ("bot-a", "bot-b"):
        hub.accounts[user] = f"{user}-token"
        hub.account_limits[user] = 2
        monkeypatch.setenv(f"{user.upper().replace('-', '_')}_TOKEN", f"{user}-token")
    monkeypatch.setenv("USER_A", "bot-a")
    monkeypatch.setenv("USER_B", "bot-b")
    expected = seed_hub(seeder, 4)
    pool = (
        "    credentials:\n"
        "      - {username_env: USER_A, password_env: BOT_A_TOKEN}\n"
        "      - {username_env: USER_B, password_env: BOT_B_TOKEN}\n"
    )
    config = config_for(write_config, target, hub, expected, extra=pool)

    run = mirror("sync", "--max-wait", "5s", config=config)

    assert run.code == 0
    assert run.report["summary"]["copied"] == 4
    (usage,) = run.report["registries"]
    assert [(c["credential"], c["pulls"]) for c in usage["credentials"]] == [
        ("account bot-a", 2),
        ("account bot-b", 2),
    ]
    assert usage["waited_seconds"] == 0
    assert hub.counters.rejected_429 == 0


def test_ratelimit_shows_the_quota_and_spends_nothing(hub, target, seeder, mirror, write_config):
    hub.limit, hub.window = 7, 600
    seed_hub(seeder, 1)
    config = config_for(write_config, target, hub, ["img0:1"])

    run = mirror("ratelimit", config=config)

    assert run.code == 0
    assert "docker.io" in run.out and "anonymous" in run.out
    assert "     7      7     600s  127.0.0.1" in run.out
    assert hub.counters.manifest_gets == 0


def test_plan_says_whether_the_quota_covers_each_image(hub, target, seeder, mirror, write_config):
    hub.limit = 3
    expected = seed_hub(seeder, 5)
    config = config_for(write_config, target, hub, expected)

    run = mirror("plan", config=config)

    quotas = [i["quota"] for i in run.report["images"]]
    assert quotas[:3] == ["covered: 3 pulls left above the reserve"] * 3
    assert quotas[3:] == ["not covered: 3 pulls left above the reserve"] * 2
    assert hub.counters.manifest_gets == 0


def test_credentials_from_a_secrets_manager_secret(
    hub, target, seeder, mirror, write_config, monkeypatch
):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._port}"
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        }.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        arn = boto3.client("secretsmanager").create_secret(
            Name="dockerhub", SecretString='{"username": "ci-bot", "accessToken": "dckr_pat_2"}'
        )["ARN"]
        hub.accounts["ci-bot"] = "dckr_pat_2"
        expected = seed_hub(seeder, 1)
        config = config_for(
            write_config, target, hub, expected, extra=f"    credentials: {{secret_arn: '{arn}'}}\n"
        )

        run = mirror("sync", config=config)

        assert run.code == 0, run.out + run.err
        assert {account for account, _ in hub._tokens.values()} == {"ci-bot"}
        missing = arn.replace("dockerhub", "nosuch")
        bad = config_for(
            write_config, target, hub, expected,
            extra=f"    credentials: {{secret_arn: '{missing}'}}\n", name="bad.yaml",
        )  # fmt: skip
        refused = mirror("sync", config=bad)
        assert refused.code == 2
        assert "ResourceNotFoundException" in refused.err and missing in refused.err
    finally:
        server.stop()


def test_a_quota_wait_is_logged_at_most_every_30_s_with_who_waits_and_the_max_wait_left(
    hub, target, seeder, mirror, write_config
):
    hub.limit, hub.window = 1, 4
    for name in ("a", "b", "c"):
        seeder.push(f"library/{name}", "1", Image([random_blob(100)]))
    config = write_config(target, "- a:1\n- b:1\n- c:1", docker_io=hub.url)

    run = mirror("sync", "--log-format", "json", config=config)

    assert run.code == 0, run.err
    waits = [json.loads(line) for line in run.out.splitlines() if '"quota_wait"' in line]
    assert len(waits) == 1  # not one per re-check: at most one every 30 s
    first = waits[0]
    assert first["registry"] == "docker.io" and first["images"] >= 1
    assert 0 < first["max_wait_left_seconds"] <= 600
