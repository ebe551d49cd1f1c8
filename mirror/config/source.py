"""Where a config is read from: a local file, `s3://BUCKET/KEY` or `ssm:/PARAMETER`.

On ECS the daemon reads its config from S3 or Parameter Store, and re-reads it before
every pass, so a changed config takes effect without a new deployment. The same
`--config`/`MIRROR_CONFIG` value works for every command.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from mirror.errors import ConfigError

__all__ = [
    "OWNER_ENV",
    "bucket_owner",
    "config_base_dir",
    "config_text",
    "is_remote",
    "read_config_text",
    "remote_resource",
]

_HINT = "pass --config PATH, s3://BUCKET/KEY or ssm:/PARAMETER, or set MIRROR_CONFIG"


def is_remote(source: str) -> bool:
    return source.startswith(("s3://", "ssm:"))


def remote_resource(source: str) -> tuple[str, str, str] | None:
    """(service, bucket or "", key or parameter name) of a remote source, else None."""
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ConfigError(f"config {source}: write s3://BUCKET/KEY", hint=_HINT)
        return "s3", bucket, key
    if source.startswith("ssm:"):
        name = source.removeprefix("ssm:")
        if not name.startswith("/"):
            raise ConfigError(f"config {source}: write ssm:/PARAMETER/NAME", hint=_HINT)
        return "ssm", "", name
    return None


def config_base_dir(source: str) -> Path:
    """What relative paths inside the config (lifecycle_policy) are read against."""
    return Path.cwd() if is_remote(source) else Path(source).parent


OWNER_ENV = "MIRROR_S3_BUCKET_OWNER"


def bucket_owner() -> str:
    """The account every S3 bucket mirror reads or writes must belong to: S3 refuses the
    request (403) when the bucket is another account's, so a bucket name that someone
    else registers receives nothing and serves nothing. $MIRROR_S3_BUCKET_OWNER, else the
    account of the credentials in use (STS answers that without any permission)."""
    given = os.environ.get(OWNER_ENV, "")
    if given:
        if not re.fullmatch(r"\d{12}", given):
            raise ConfigError(f"{OWNER_ENV}={given!r}: write a 12-digit AWS account id")
        return given
    return _caller_account()


@functools.cache
def _caller_account() -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(boto3.client("sts").get_caller_identity()["Account"])
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(
            f"cannot tell which account the S3 bucket must belong to: {exc}",
            hint=f"set {OWNER_ENV} to the bucket owner's account id",
        ) from None


def config_text(source: str, raw: bytes) -> str:
    """A config's bytes as text: UTF-8, or a ConfigError naming the line of the first byte
    that is not (a daemon keeps its last good config on a ConfigError, and a command
    exits 2)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{source}:{line}: byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8 text",
            hint="save the config as UTF-8; a binary file or another encoding cannot be read",
        ) from None


def read_config_text(source: str) -> str:
    resource = remote_resource(source)
    if resource is None:
        try:
            return config_text(source, Path(source).read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read config {source}: {exc.strerror}", hint=_HINT) from None
    service, bucket, key = resource
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if service == "s3":
            body: Any = boto3.client("s3").get_object(
                Bucket=bucket, Key=key, ExpectedBucketOwner=bucket_owner()
            )["Body"]
            return config_text(source, body.read())
        answer = boto3.client("ssm").get_parameter(Name=key, WithDecryption=True)
        return str(answer["Parameter"]["Value"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"cannot read config {source}: {code}", hint=_HINT) from None
    except (BotoCoreError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {source}: {exc}", hint=_HINT) from None
