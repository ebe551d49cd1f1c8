"""Turn credential settings into usernames and secrets: from the environment, or from an
AWS Secrets Manager secret. Any problem is a config error (exit 2) naming where it is
configured, never the secret itself."""

from __future__ import annotations

import json
import os
from typing import Any

from mirror.config.model import EnvCredentials, SecretCredentials
from mirror.errors import ConfigError
from mirror.oci.credentials import Credentials
from mirror.secrets import remember, remember_credentials

__all__ = ["resolve_credentials"]


def _from_env(spec: EnvCredentials, where: str) -> Credentials:
    missing = [n for n in (spec.username_env, spec.password_env) if not os.environ.get(n)]
    if missing:
        raise ConfigError(
            f"{where}: environment variable(s) {', '.join(missing)} not set",
            hint="export them, or remove the credentials block for anonymous access",
        )
    username, password = os.environ[spec.username_env], os.environ[spec.password_env]
    remember_credentials(username, password)
    return Credentials(username, password)


def _secret_value(arn: str) -> str:
    import boto3  # only configs that name a secret need AWS at all
    from botocore.exceptions import BotoCoreError, ClientError

    region = arn.split(":")[3]
    try:
        response: dict[str, Any] = boto3.client(
            "secretsmanager", region_name=region
        ).get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise ConfigError(
            f"cannot read secret {arn}: {code}",
            hint="check the ARN and that this role may call secretsmanager:GetSecretValue",
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot read secret {arn}: {type(exc).__name__}") from None
    value = str(response.get("SecretString") or "")
    remember(value)
    return value


def _from_secret(spec: SecretCredentials, where: str) -> Credentials:
    try:
        data = json.loads(_secret_value(spec.secret_arn))
    except ValueError:
        data = None
    if isinstance(data, dict):
        username = data.get("username")
        password = data.get("accessToken") or data.get("password")
        if isinstance(username, str) and isinstance(password, str) and username and password:
            remember_credentials(username, password)
            return Credentials(username, password)
    raise ConfigError(
        f"{where}: secret {spec.secret_arn} is not JSON with username and accessToken",
        hint='store {"username": "...", "accessToken": "..."} (or "password")',
    )


def resolve_credentials(spec: EnvCredentials | SecretCredentials, where: str) -> Credentials:
    if isinstance(spec, SecretCredentials):
        return _from_secret(spec, where)
    return _from_env(spec, where)
