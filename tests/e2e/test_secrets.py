"""No secret reaches a log line, a report or a written file, at the most verbose level.

Known secrets come from every place mirror gets them: the environment (a Docker Hub
token, and the Bearer tokens the realm issues for it), Secrets Manager (moto), ECR's
authorization token (moto), a webhook's HMAC key and the password in its URL, and the
presigned blob redirects of the Docker-Hub-like front. Every command runs with `-vvv
--log-wire`; all output streams and files are searched for each secret whole and for
every 16-character piece of it.
"""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from tests.support.fake_ecr import ACCOUNT
from tests.support.hostile import Recorder
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.e2e

HUB_TOKEN = "dckr_pat_0123456789abcdefSECRET"
QUAY_TOKEN = "quay-robot-token-9876543210SECRET"
WEBHOOK_KEY = "webhook-hmac-key-0123456789SECRET"
HOOK_PASSWORD = "hook-url-password-0123456789SECRET"
ECR_PASSWORD = f"{ACCOUNT}-auth-token"


def pieces(secret: str) -> set[str]:
    return {secret[i : i + 16] for i in range(len(secret) - 15)} | {secret}


def test_every_command_at_the_most_verbose_level_leaks_no_secret(
    ecr, hub, seeder, mirror, tmp_path, monkeypatch
):
    seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
    hub.accounts["ci-bot"] = HUB_TOKEN
    monkeypatch.setenv("HUB_USER", "ci-bot")
    monkeypatch.setenv("HUB_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("WEBHOOK_KEY", WEBHOOK_KEY)
    secret_string = json.dumps({"username": "robot", "accessToken": QUAY_TOKEN})
    arn = boto3.client("secretsmanager").create_secret(Name="quay", SecretString=secret_string)[
        "ARN"
    ]
    with (
        LocalRegistry(htpasswd=("robot", QUAY_TOKEN)) as quay,
        Recorder() as hook,
    ):
        quay_seeder = Seeder(quay.url, auth=("robot", QUAY_TOKEN))
        quay_seeder.push("team/tool", "1", Image([random_blob(1000)]))
        quay_seeder.close()
        hook_url = hook.url.replace("http://", f"http://hook:{HOOK_PASSWORD}@") + "/events"
        config = tmp_path / "mirror.yaml"
        config.write_text(
            "version: 1\n"
            f"target:\n  kind: ecr\n  region: us-east-1\n  registry_url: {ecr.data_plane.url}\n"
            "registries:\n"
            f"  docker.io:\n    url: {hub.url}\n"
            "    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}\n"
            f"  quay.io:\n    url: {quay.url}\n    credentials: {{secret_arn: '{arn}'}}\n"
            f"events:\n  - webhook: {{url: '{hook_url}', secret_env: WEBHOOK_KEY}}\n"
            "prune: {keep_days: 0}\n"
            "images:\n  - nginx:1.16\n  - quay.io/team/tool:1\n"
        )
        outputs = []
        files = {name: tmp_path / name for name in ("pull.sh", "lock.json")}
        for command in (
            ["validate"],
            ["plan"],
            ["sync"],
            ["sync"],
            ["ratelimit"],
            ["iam-policy"],
            ["buildspec", "--format", "script", "--output", str(files["pull.sh"])],
            ["lock", "--output", str(files["lock.json"])],
            ["prune"],
        ):
            run = mirror(*command, "-vvv", "--log-wire", config=config)
            outputs.append((command[0], run.code, run.out + run.err + json.dumps(run.report)))
            if command == ["sync"]:  # the tag moves upstream: the next sync sends an event
                seeder.push("library/nginx", "1.16", Image([random_blob(1000)]))
        assert [code for name, code, _ in outputs if name == "sync"] == [0, 0], outputs[2][2][
            -3000:
        ]
        assert hook.requests, "the webhook got the change events"

    tokens = list(hub._tokens)
    ecr_token = base64.b64encode(f"AWS:{ECR_PASSWORD}".encode()).decode()
    secrets = [
        HUB_TOKEN, QUAY_TOKEN, secret_string, WEBHOOK_KEY, HOOK_PASSWORD, ECR_PASSWORD,
        ecr_token, *tokens, *hub.counters.cdn_signatures,
    ]  # fmt: skip
    assert tokens and hub.counters.cdn_signatures
    written = [path.read_text() for path in files.values()]
    wire = "".join(text for _, _, text in outputs)
    assert "Response body" in wire or "botocore" in wire  # the wire logs did run
    for secret in secrets:
        for piece in pieces(secret):
            for name, _, text in outputs:
                assert piece not in text, (name, piece)
            for text in written:
                assert piece not in text, piece
