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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from mirror.aws.access import merge_policy
from mirror.aws.partitions import partition
from mirror.config.lifecycle import MIRROR_DEFAULTS
from mirror.config.model import KmsEncryption, RepositorySettings
from mirror.errors import MirrorError, aws_hint
from mirror.oci.credentials import Credentials
from mirror.secrets import remember, remember_credentials

__all__ = [
    "AwsError",
    "Ecr",
    "Refusals",
    "RefusedSetting",
    "call_aws",
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


@dataclass(frozen=True)
class RefusedSetting:
    """A repository (or registry) setting ECR refused: the image is still copied, the
    run exits 1, and the next pass tries the setting again."""

    repository: str  # or the registry-level thing it is about: "replication", a rule prefix
    setting: str  # the config's name for it: lifecycle_policy, pull_access, tags, ...
    code: str
    message: str
    hint: str


# What to do when ECR refuses a setting, by the config key it comes from.
_SETTING_HINTS = {
    "lifecycle_policy": "check the policy against ECR's lifecycle rules (`mirror validate`), "
    "or set lifecycle_policy: none",
    "pull_access": "check pull_access.organization_id and accounts; ECR names the part of "
    "the policy it refused",
    "tags": "ECR allows 50 tags, keys of 128 and values of 256 characters",
    "tag_mutability": "check tag_mutability and tag_mutability_exclusions",
    "scan_on_push": "a registry-level scanning configuration may override scan_on_push",
    "replicate_to": "check replicate_to; a destination in another account needs its "
    "registry policy (`mirror iam-policy --destination`)",
    "creation_template": "check the repository settings the template copies",
    "settings": "the repository's settings could not be read; the next pass tries again",
}


class Refusals:
    """The settings ECR refused in one run, from every part that applies settings
    (repositories, pull-through-cache templates, replication); thread-safe."""

    def __init__(self) -> None:
        self._found: list[RefusedSetting] = []
        self._lock = threading.Lock()

    def record(self, repository: str, setting: str, exc: AwsError) -> None:
        """Log and keep ECR's refusal of `setting`, with what to do about it."""
        if exc.code in ("AccessDeniedException", "AccessDenied"):
            hint = "grant the permissions `mirror iam-policy` lists for this config"
        else:
            hint = exc.hint or _SETTING_HINTS.get(setting, "")
        refused = RefusedSetting(repository, setting, exc.code, exc.message, hint)
        log.error("repository_setting_refused", **refused.__dict__)
        with self._lock:
            self._found.append(refused)

    def all(self) -> list[RefusedSetting]:
        with self._lock:
            return list(self._found)


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


class _AlreadyThere(Exception):
    """create_repository lost a race with another run."""


# create_repository's answers when the tags are what it refuses.
_TAG_ERRORS = frozenset({"InvalidTagParameterException", "TooManyTagsException"})


class Ecr:
    """One ECR registry (account + Region) as mirror's target."""

    def __init__(
        self,
        client: Any,
        settings: RepositorySettings,
        lifecycle_policy: dict[str, Any] | None,
        retired_lifecycle_policy: dict[str, Any] | None = None,
        prefix: str = "mirror",
        refusals: Refusals | None = None,
    ) -> None:
        self._client = client
        self._partition = partition(client.meta.region_name)
        self._refusals = refusals or Refusals()
        self._settings = settings
        self._owner_tags = ownership_tags(prefix)
        self._tags = {**self._owner_tags, **settings.tags}
        self._lifecycle = lifecycle_policy
        self._retired = retired_lifecycle_policy
        self._ready: set[str] = set()
        self._unowned: set[str] = set()
        self._prefix = prefix
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

    def blob_mounting(self) -> str | None:
        """The registry's BLOB_MOUNTING setting: with it ENABLED, ECR mounts a layer that
        another repository of the registry holds instead of taking it again (same
        encryption only); DISABLED answers a mount with an upload session. None where it
        cannot be read."""
        try:
            found = call_aws(self._client, "get_account_setting", name="BLOB_MOUNTING")
        except AwsError as exc:
            log.debug("blob_mounting_unknown", error=str(exc))
            return None
        value = found.get("value")
        return value if value in ("ENABLED", "DISABLED") else None

    def ensure_repository(self, name: str) -> None:
        """Create `name` with the configured settings, or reconcile it; once per run.
        Raises only when the repository cannot be created or read: a setting ECR refuses
        is recorded (`Refusals`) and the copy goes on."""
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

    def settle_repository(self, name: str) -> None:
        """For an image already in place: reconcile its repository's settings once per
        run, so a setting refused before is tried again without a copy. Never raises."""
        try:
            self.ensure_repository(name)
        except AwsError as exc:
            self._refusals.record(name, "settings", exc)

    def _apply(self, name: str, setting: str, change: Callable[[], bool]) -> bool:
        """Run one setting's check-and-change; True when it changed something. A refusal
        is recorded, never raised."""
        try:
            return change()
        except AwsError as exc:
            self._refusals.record(name, setting, exc)
            return False

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
            self._create_with(name, arguments)
        except _AlreadyThere:  # another run just made it
            existing = self._describe(name)
            assert existing is not None
            self._reconcile(name, existing)
            return
        if self._lifecycle is not None:
            self._apply(name, "lifecycle_policy", lambda: self._put_lifecycle(name))
        pull_access = settings.pull_access
        if pull_access is not None:
            self._apply(
                name,
                "pull_access",
                lambda: self._set_policy(name, merge_policy(None, pull_access, self._partition)),
            )
        log.info("repository_created", repository=name)

    def _create_with(self, name: str, arguments: dict[str, Any]) -> None:
        """create_repository; tags ECR refuses are recorded and the repository is made
        with mirror's ownership tags alone (the copy needs the repository, not the tags)."""
        try:
            call_aws(self._client, "create_repository", **arguments)
        except AwsError as exc:
            if exc.code == "RepositoryAlreadyExistsException":
                raise _AlreadyThere from None
            owner_only = [{"Key": k, "Value": v} for k, v in self._owner_tags.items()]
            if exc.code not in _TAG_ERRORS or arguments["tags"] == owner_only:
                raise  # nothing left to drop: the repository cannot be made
            self._refusals.record(name, "tags", exc)
            self._create_with(name, {**arguments, "tags": owner_only})

    def _put_lifecycle(self, name: str) -> bool:
        call_aws(
            self._client,
            "put_lifecycle_policy",
            repositoryName=name,
            lifecyclePolicyText=json.dumps(self._lifecycle),
        )
        return True

    def unowned(self) -> list[str]:
        """Repositories of this run that mirror did not create and was not told to adopt:
        images go into them, their settings are left alone."""
        with self._lock:
            return sorted(self._unowned)

    def _reconcile(self, name: str, repository: dict[str, Any]) -> None:
        """Bring an existing repository's settings in line, logging each change; each
        setting on its own, so one that ECR refuses leaves the others applied. A
        repository without mirror's ownership tags is someone else's: left as it is
        unless `adopt_existing` says to take it over."""
        arn = repository["repositoryArn"]
        try:
            tags = call_aws(self._client, "list_tags_for_resource", resourceArn=arn)["tags"]
        except (AwsError, KeyError) as exc:  # whose it is is unknown: nothing is changed
            error = exc if isinstance(exc, AwsError) else AwsError(str(exc), code="NO_TAGS")
            self._refusals.record(name, "settings", error)
            return
        if not owned(tags, self._prefix) and not self._settings.adopt_existing:
            with self._lock:
                first = name not in self._unowned
                self._unowned.add(name)
            if first:
                log.warning(
                    "repository_not_owned",
                    repository=name,
                    hint="mirror writes images into it and changes nothing else; set "
                    "target.repository.adopt_existing: true to manage it as mirror's own",
                )
            return
        changes: list[tuple[str, Callable[[], bool]]] = [
            ("tag_mutability", lambda: self._mutability(name, repository)),
            ("scan_on_push", lambda: self._scanning(name, repository)),
            ("lifecycle_policy", lambda: self._lifecycle_setting(name)),
            ("tags", lambda: self._tagging(arn, tags)),
            ("pull_access", lambda: self._pull_access(name)),
        ]
        changed = [setting for setting, change in changes if self._apply(name, setting, change)]
        encryption = repository.get("encryptionConfiguration") or {"encryptionType": "AES256"}
        wanted = encryption_configuration(self._settings)
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

    def _mutability(self, name: str, repository: dict[str, Any]) -> bool:
        settings = self._settings
        exclusions = exclusion_filters(settings)
        if (
            repository.get("imageTagMutability") == settings.tag_mutability
            and (repository.get("imageTagMutabilityExclusionFilters") or []) == exclusions
        ):
            return False
        arguments: dict[str, Any] = {"imageTagMutability": settings.tag_mutability}
        if exclusions:
            arguments["imageTagMutabilityExclusionFilters"] = exclusions
        call_aws(self._client, "put_image_tag_mutability", repositoryName=name, **arguments)
        return True

    def _scanning(self, name: str, repository: dict[str, Any]) -> bool:
        scanning = repository.get("imageScanningConfiguration") or {}
        if bool(scanning.get("scanOnPush")) == self._settings.scan_on_push:
            return False
        call_aws(
            self._client,
            "put_image_scanning_configuration",
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": self._settings.scan_on_push},
        )
        return True

    def _lifecycle_setting(self, name: str) -> bool:
        """The configured policy in place; or, where prune replaces mirror's default, that
        default removed."""
        if self._lifecycle is not None:
            return self._lifecycle_of(name) != self._lifecycle and self._put_lifecycle(name)
        if self._retired is not None and self._lifecycle_of(name) in MIRROR_DEFAULTS:
            call_aws(self._client, "delete_lifecycle_policy", repositoryName=name)
            log.info("lifecycle_policy_removed", repository=name, why="prune replaces it")
            return True
        return False

    def _tagging(self, arn: str, tags: list[dict[str, str]]) -> bool:
        have = {t["Key"]: t["Value"] for t in tags}
        if all(have.get(k) == v for k, v in self._tags.items()):
            return False
        call_aws(
            self._client,
            "tag_resource",
            resourceArn=arn,
            tags=[{"Key": k, "Value": v} for k, v in self._tags.items()],
        )
        return True

    def _pull_access(self, name: str) -> bool:
        if self._settings.pull_access is None:
            return False
        current = self._policy_of(name)
        wanted = merge_policy(current, self._settings.pull_access, self._partition)
        if current is not None and json.loads(current) == wanted:
            return False
        return self._set_policy(name, wanted)

    def _policy_of(self, name: str) -> str | None:
        try:
            found = call_aws(self._client, "get_repository_policy", repositoryName=name)
        except AwsError as exc:
            if exc.code == "RepositoryPolicyNotFoundException":
                return None
            raise
        return str(found["policyText"])

    def _set_policy(self, name: str, policy: dict[str, Any]) -> bool:
        call_aws(
            self._client,
            "set_repository_policy",
            repositoryName=name,
            policyText=json.dumps(policy),
        )
        return True

    def _lifecycle_of(self, name: str) -> Any:
        try:
            text = call_aws(self._client, "get_lifecycle_policy", repositoryName=name)
        except AwsError as exc:
            if exc.code == "LifecyclePolicyNotFoundException":
                return None
            raise
        return json.loads(text["lifecyclePolicyText"])

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
