"""ECR's control plane: the registry's address, data-plane credentials, and repositories
created on demand with the configured settings (and existing ones reconciled).

Every boto3 call goes through `call_aws`, so AWS errors become MirrorErrors with the AWS
code; throttling is retried by botocore's standard mode, while a LimitExceededException
names the service quota and is not retried.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import structlog

from mirror.access import merge_policy
from mirror.config.model import KmsEncryption, RepositorySettings
from mirror.errors import MirrorError, aws_hint
from mirror.lifecycle import MIRROR_DEFAULTS
from mirror.oci.auth import Credentials
from mirror.secrets import remember, remember_credentials

__all__ = [
    "AwsError",
    "Ecr",
    "call_aws",
    "ecr_host",
    "encryption_configuration",
    "exclusion_filters",
    "owned",
    "ownership_tags",
]

log = structlog.get_logger(__name__)

# The service quota each call can run into, for LimitExceededException messages.
_QUOTAS = {
    "CreateRepository": "Registered repositories per Region",
    "PutLifecyclePolicy": "Rules per lifecycle policy",
    "TagResource": "Tags per resource",
    "CreatePullThroughCacheRule": "Pull through cache rules per registry",
}


# Every repository mirror writes to carries these, and prune touches no repository that
# lacks them: another team's repositories are never mirror's, whatever their names.
OWNER_TAG, OWNER_VALUE, PREFIX_TAG = "managed-by", "mirror", "mirror-prefix"


def ownership_tags(prefix: str) -> dict[str, str]:
    return {OWNER_TAG: OWNER_VALUE, PREFIX_TAG: prefix.strip("/")}


def owned(tags: list[dict[str, str]], prefix: str) -> bool:
    """Whether a repository's tags (as ECR lists them) say mirror owns it, under `prefix`."""
    have = {t.get("Key"): t.get("Value") for t in tags}
    return all(have.get(k) == v for k, v in ownership_tags(prefix).items())


# ECR's default "Images per repository" quota, and the share at which mirror warns.
IMAGES_PER_REPOSITORY = 100_000
IMAGE_QUOTA_WARNING_SHARE = 0.8


class AwsError(MirrorError):
    """An AWS API call failed; `code` is the AWS error code."""

    def __init__(self, message: str, *, code: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code


def ecr_host(account: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account}.dkr.ecr.{region}{suffix}"


def call_aws(client: Any, operation: str, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        name = exc.operation_name
        if code == "LimitExceededException":
            quota = _QUOTAS.get(name, "an Amazon ECR service quota")
            raise AwsError(
                f"{name}: the quota '{quota}' is reached: {error.get('Message', '')}",
                code="LIMIT_EXCEEDED",
                hint="request a higher quota in Service Quotas, or remove unused resources",
            ) from None
        raise AwsError(f"{name}: {code}: {error.get('Message', '')}", code=code) from None
    except BotoCoreError as exc:
        raise AwsError(f"{operation}: {exc}", code=type(exc).__name__, hint=aws_hint(exc)) from None


def encryption_configuration(settings: RepositorySettings) -> dict[str, str]:
    if isinstance(settings.encryption, KmsEncryption):
        wanted = {"encryptionType": "KMS"}
        if settings.encryption.kms_key:
            wanted["kmsKey"] = settings.encryption.kms_key
        return wanted
    return {"encryptionType": "AES256"}


def exclusion_filters(settings: RepositorySettings) -> list[dict[str, str]]:
    return [{"filterType": "WILDCARD", "filter": f} for f in settings.tag_mutability_exclusions]


class Ecr:
    """One ECR registry (account + Region) as mirror's target."""

    def __init__(
        self,
        client: Any,
        settings: RepositorySettings,
        lifecycle_policy: dict[str, Any] | None,
        retired_lifecycle_policy: dict[str, Any] | None = None,
        prefix: str = "mirror",
    ) -> None:
        self._client = client
        self._settings = settings
        self._tags = {**ownership_tags(prefix), **settings.tags}
        self._lifecycle = lifecycle_policy
        self._retired = retired_lifecycle_policy
        self._ready: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 ECR client, for what works on images rather than repositories (prune)."""
        return self._client

    def authorization(self) -> tuple[Credentials, float | None]:
        """Data-plane Basic credentials (`AWS` + a 12-hour token) and their expiry."""
        data = call_aws(self._client, "get_authorization_token")["authorizationData"][0]
        token = data["authorizationToken"]
        user, _, password = base64.b64decode(token).decode().partition(":")
        remember(token)  # itself the Basic header value of AWS:<password>
        remember_credentials(user, password)
        expires = data.get("expiresAt")
        return Credentials(user, password), expires.timestamp() if expires else None

    def ensure_repository(self, name: str) -> None:
        """Create `name` with the configured settings, or reconcile it; once per run."""
        with self._lock:
            if name in self._ready:
                return
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._ready:
                return
            existing = self._describe(name)
            if existing is None:
                self._create(name)
            else:
                self._reconcile(name, existing)
            with self._lock:
                self._ready.add(name)

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            found = call_aws(self._client, "describe_repositories", repositoryNames=[name])
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                return None
            raise
        repository: dict[str, Any] = found["repositories"][0]
        return repository

    def _create(self, name: str) -> None:
        settings = self._settings
        arguments: dict[str, Any] = {
            "repositoryName": name,
            "imageTagMutability": settings.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push},
            "encryptionConfiguration": encryption_configuration(settings),
        }
        if settings.tag_mutability_exclusions:
            arguments["imageTagMutabilityExclusionFilters"] = exclusion_filters(settings)
        arguments["tags"] = [{"Key": k, "Value": v} for k, v in self._tags.items()]
        try:
            call_aws(self._client, "create_repository", **arguments)
        except AwsError as exc:
            if exc.code != "RepositoryAlreadyExistsException":  # another run just made it
                raise
            existing = self._describe(name)
            assert existing is not None
            self._reconcile(name, existing)
            return
        if self._lifecycle is not None:
            call_aws(
                self._client,
                "put_lifecycle_policy",
                repositoryName=name,
                lifecyclePolicyText=json.dumps(self._lifecycle),
            )
        if settings.pull_access is not None:
            self._set_policy(name, merge_policy(None, settings.pull_access))
        log.info("repository_created", repository=name)

    def _reconcile(self, name: str, repository: dict[str, Any]) -> None:
        """Bring an existing repository's settings in line, logging each change."""
        settings = self._settings
        changed: list[str] = []
        exclusions = exclusion_filters(settings)
        if (
            repository.get("imageTagMutability") != settings.tag_mutability
            or (repository.get("imageTagMutabilityExclusionFilters") or []) != exclusions
        ):
            arguments: dict[str, Any] = {"imageTagMutability": settings.tag_mutability}
            if exclusions:
                arguments["imageTagMutabilityExclusionFilters"] = exclusions
            call_aws(self._client, "put_image_tag_mutability", repositoryName=name, **arguments)
            changed.append("tag_mutability")
        scanning = repository.get("imageScanningConfiguration") or {}
        if bool(scanning.get("scanOnPush")) != settings.scan_on_push:
            call_aws(
                self._client,
                "put_image_scanning_configuration",
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": settings.scan_on_push},
            )
            changed.append("scan_on_push")
        if self._lifecycle is not None and self._lifecycle_of(name) != self._lifecycle:
            call_aws(
                self._client,
                "put_lifecycle_policy",
                repositoryName=name,
                lifecyclePolicyText=json.dumps(self._lifecycle),
            )
            changed.append("lifecycle_policy")
        if self._retired is not None and self._lifecycle_of(name) in MIRROR_DEFAULTS:
            call_aws(self._client, "delete_lifecycle_policy", repositoryName=name)
            changed.append("lifecycle_policy removed: prune replaces it")
        if self._tags_differ(repository["repositoryArn"]):  # repositories from before
            call_aws(
                self._client,
                "tag_resource",
                resourceArn=repository["repositoryArn"],
                tags=[{"Key": k, "Value": v} for k, v in self._tags.items()],
            )
            changed.append("tags")
        if settings.pull_access is not None:
            current = self._policy_of(name)
            wanted = merge_policy(current, settings.pull_access)
            if current is None or json.loads(current) != wanted:
                self._set_policy(name, wanted)
                changed.append("pull_access")
        encryption = repository.get("encryptionConfiguration") or {"encryptionType": "AES256"}
        wanted = encryption_configuration(settings)
        if encryption.get("encryptionType") != wanted["encryptionType"] or (
            "kmsKey" in wanted and encryption.get("kmsKey") != wanted["kmsKey"]
        ):
            log.warning(
                "repository_encryption_differs",
                repository=name,
                has=encryption,
                configured=wanted,
                hint="ECR cannot change a repository's encryption; recreate it to change it",
            )
        if changed:
            log.info("repository_reconciled", repository=name, changed=changed)

    def _policy_of(self, name: str) -> str | None:
        try:
            found = call_aws(self._client, "get_repository_policy", repositoryName=name)
        except AwsError as exc:
            if exc.code == "RepositoryPolicyNotFoundException":
                return None
            raise
        return str(found["policyText"])

    def _set_policy(self, name: str, policy: dict[str, Any]) -> None:
        call_aws(
            self._client,
            "set_repository_policy",
            repositoryName=name,
            policyText=json.dumps(policy),
        )

    def _lifecycle_of(self, name: str) -> Any:
        try:
            text = call_aws(self._client, "get_lifecycle_policy", repositoryName=name)
        except AwsError as exc:
            if exc.code == "LifecyclePolicyNotFoundException":
                return None
            raise
        return json.loads(text["lifecyclePolicyText"])

    def _tags_differ(self, arn: str) -> bool:
        found = call_aws(self._client, "list_tags_for_resource", resourceArn=arn).get("tags") or []
        have = {t["Key"]: t["Value"] for t in found}
        return any(have.get(k) != v for k, v in self._tags.items())

    def warn_if_near_image_quota(self, name: str) -> None:
        """Log a warning when `name` holds 80% of ECR's images-per-repository quota."""
        from botocore.exceptions import BotoCoreError, ClientError

        count = 0
        try:
            pages = self._client.get_paginator("describe_images").paginate(
                repositoryName=name, PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                count += len(page.get("imageDetails") or [])
        except (BotoCoreError, ClientError) as exc:
            log.warning("image_count_unavailable", repository=name, error=str(exc))
            return
        if count >= IMAGES_PER_REPOSITORY * IMAGE_QUOTA_WARNING_SHARE:
            log.warning(
                "repository_near_image_quota",
                repository=name,
                images=count,
                quota=IMAGES_PER_REPOSITORY,
                hint="ECR refuses pushes at the quota: prune old tags or raise the quota",
            )
