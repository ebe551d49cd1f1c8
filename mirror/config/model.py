"""The config schema (docs/config.md), validated by pydantic; every section rejects unknown keys.

Values that can be checked without the network (references, platforms, regexes, semver
ranges) are checked here, so a bad config fails before anything is touched.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mirror.config.cacheable import ptc_upstream
from mirror.config.selection import parse_semver_range
from mirror.durations import parse_duration
from mirror.errors import MirrorError
from mirror.oci.grammar import ecr_registry_region, is_aws_region, is_tag
from mirror.oci.limits import Timeouts
from mirror.oci.reference import parse_reference
from mirror.oci.types import Platform

__all__ = [
    "ON_DEMAND_QUEUE_ENV",
    "Concurrency",
    "CoordinationSettings",
    "DaemonSettings",
    "Defaults",
    "EnvCredentials",
    "ImageSpec",
    "KmsEncryption",
    "MetricsSettings",
    "MirrorConfig",
    "OnDemandSettings",
    "OnDemandTags",
    "PublishSettings",
    "PullAccess",
    "RateLimitSettings",
    "RegistrySettings",
    "ReplicaDestination",
    "RepositorySettings",
    "SecretCredentials",
    "TagRule",
    "TargetSettings",
    "TimeoutSettings",
    "on_demand_queue_url",
    "queue_arn",
    "queue_region",
]

DEFAULT_EVERY = "6h"
_PREFIX_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_HOST_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?$")


class Section(BaseModel):
    """A config mapping: strict types, and an unknown key names the keys that are allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'{suggestion}; allowed here: {allowed}",
                        {
                            "key": key,
                            "suggestion": f"; did you mean '{close[0]}'?" if close else "",
                            "allowed": ", ".join(cls.model_fields),
                        },
                    )
        return data


def _check_reference(value: str) -> str:
    try:
        parse_reference(value, default_tag=None)
    except MirrorError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_platforms(value: list[str] | str) -> list[str] | str:
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty platform list selects nothing; write `all` or a list")
        for item in value:
            Platform.parse(item)
    return value


def _by_kind(list_tag: str, other_tag: str) -> Discriminator:
    return Discriminator(lambda v: list_tag if isinstance(v, list) else other_tag)


Platforms = Annotated[
    Annotated[list[str], Tag("~list")] | Annotated[Literal["all"], Tag("~all")],
    _by_kind("~list", "~all"),
]


class EnvCredentials(Section):
    """Names of environment variables holding a username and a password or token."""

    username_env: str
    password_env: str


class SecretCredentials(Section):
    """An AWS Secrets Manager secret holding JSON {"username", "accessToken" or "password"}."""

    secret_arn: str

    @field_validator("secret_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not re.match(r"^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$", value):
            raise ValueError(
                "write the full secret ARN: arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"
            )
        return value


def _credential_kind(value: Any) -> str:
    if isinstance(value, list):
        return "~pool"
    return "~secret" if isinstance(value, dict) and "secret_arn" in value else "~env"


Credential = Annotated[
    Annotated[EnvCredentials, Tag("~env")] | Annotated[SecretCredentials, Tag("~secret")],
    Discriminator(_credential_kind),
]
CredentialSpec = Annotated[
    Annotated[EnvCredentials, Tag("~env")]
    | Annotated[SecretCredentials, Tag("~secret")]
    | Annotated[list[Credential], Field(min_length=1), Tag("~pool")],
    Discriminator(_credential_kind),
]


class RateLimitSettings(Section):
    reserve: int = Field(default=0, ge=0)


class RegistrySettings(Section):
    url: str | None = None
    credentials: CredentialSpec | None = None
    rate_limit: RateLimitSettings = RateLimitSettings()
    mode: Literal["copy", "pull-through-cache"] = "copy"
    # Requests a second to this registry, HEADs included (default: what it documents,
    # else none until it throttles; mirror then learns a rate from its 429s)
    requests_per_second: float | None = Field(default=None, gt=0, le=1000)
    prewarm: bool = False  # pull-through-cache: pull each configured tag through ECR once
    # pull-through-cache from another ECR registry: the IAM role ECR assumes to pull from
    # it (the rule's customRoleArn)
    role_arn: str | None = None

    @model_validator(mode="after")
    def _prewarm(self) -> RegistrySettings:
        if self.prewarm and self.mode != "pull-through-cache":
            raise ValueError("prewarm applies to mode: pull-through-cache only")
        if self.role_arn is not None and self.mode != "pull-through-cache":
            raise ValueError("role_arn applies to mode: pull-through-cache only")
        return self

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not re.match(
            r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$", value
        ):
            raise ValueError("write the role ARN: arn:aws:iam::ACCOUNT:role/NAME")
        return value

    @property
    def credential_list(self) -> list[EnvCredentials | SecretCredentials]:
        """The pool, in the order it is used: one entry for a single credential."""
        if self.credentials is None:
            return []
        return list(self.credentials) if isinstance(self.credentials, list) else [self.credentials]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_endpoint(value)


class KmsEncryption(Section):
    type: Literal["KMS"]
    kms_key: str | None = None  # None: the AWS managed key for ECR

    @field_validator("kms_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not re.match(
            r"^(arn:aws[\w-]*:kms:|alias/|[0-9a-f-]{36}$)", value
        ):
            raise ValueError("write a KMS key ARN, key id or alias/NAME")
        return value


Encryption = Annotated[
    Annotated[Literal["AES256"], Tag("~aes")] | Annotated[KmsEncryption, Tag("~kms")],
    Discriminator(lambda v: "~kms" if isinstance(v, dict) else "~aes"),
]
TagMutability = Literal[
    "MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"
]


def _check_account(value: str) -> str:
    if not re.fullmatch(r"[0-9]{12}", value, re.ASCII):
        raise ValueError(f"invalid account {value!r}: 12 digits, quoted in YAML")
    return value


class PullAccess(Section):
    """Who else may pull the mirror: an Organization's accounts and/or named accounts."""

    organization_id: str | None = None
    accounts: list[str] = Field(default_factory=list)

    @field_validator("organization_id")
    @classmethod
    def _organization(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"o-[a-z0-9]{10,32}", value, re.ASCII):
            raise ValueError(f"invalid Organization id {value!r}: write e.g. o-a1b2c3d4e5")
        return value

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        for account in value:
            _check_account(account)
        return value

    @model_validator(mode="after")
    def _someone(self) -> PullAccess:
        if not self.organization_id and not self.accounts:
            raise ValueError("pull_access needs organization_id and/or accounts")
        return self


MAX_REPOSITORY_TAGS = 48


class RepositorySettings(Section):
    """Applied to every repository mirror creates in ECR, and reconciled on existing ones."""

    tag_mutability: TagMutability = "MUTABLE"
    tag_mutability_exclusions: list[str] = Field(default_factory=list)
    scan_on_push: bool = True
    encryption: Encryption = "AES256"
    lifecycle_policy: str = "default"  # default | none | path to a JSON policy
    tags: dict[str, str] = Field(default_factory=dict)
    pull_access: PullAccess | None = None  # a repository policy: who else may pull
    # Take over repositories mirror did not create (no ownership tags): reconcile their
    # settings and tag them as mirror's, which puts them in prune's reach.
    adopt_existing: bool = False

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        """ECR's tag rules (ECR API reference, Tag; AWS tagging: `aws:` is reserved);
        mirror's two ownership tags count towards the 50 a repository may have."""
        if len(value) > MAX_REPOSITORY_TAGS:
            raise ValueError(f"at most {MAX_REPOSITORY_TAGS} tags (ECR allows 50, mirror adds 2)")
        for key, text in value.items():
            if not 1 <= len(key) <= 128 or len(text) > 256:
                raise ValueError(f"tag {key!r}: keys have 1 to 128 characters, values 256")
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag {key!r}: the aws: prefix is reserved for AWS")
        return value

    @model_validator(mode="after")
    def _exclusions(self) -> RepositorySettings:
        wants = self.tag_mutability.endswith("_WITH_EXCLUSION")
        if wants and not self.tag_mutability_exclusions:
            raise ValueError(
                f"{self.tag_mutability} needs tag_mutability_exclusions (wildcards such as latest)"
            )
        if self.tag_mutability_exclusions and not wants:
            raise ValueError("tag_mutability_exclusions needs a *_WITH_EXCLUSION tag_mutability")
        return self


class ReplicaDestination(Section):
    """An ECR replica of everything under repository_prefix: a Region, in this account
    unless `account` names another."""

    region: str
    account: str | None = None
    registry_url: str | None = None  # data-plane URL override (a VPC endpoint, tests)

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        return _check_endpoint(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not is_aws_region(value):
            raise ValueError(f"invalid AWS Region {value!r}: write e.g. eu-west-1")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        return value if value is None else _check_account(value)


def _check_endpoint(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
        raise ValueError("write the endpoint as http(s)://host[:port], without a path")
    return value


class TargetSettings(Section):
    kind: Literal["registry", "ecr"] = "ecr"
    region: str | None = None
    registry: str | None = None
    registry_url: str | None = None
    repository_prefix: str = "mirror"
    repository: RepositorySettings = RepositorySettings()
    replicate_to: list[ReplicaDestination] = Field(default_factory=list)
    credentials: EnvCredentials | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not is_aws_region(value):
            raise ValueError(f"invalid AWS Region {value!r}: write e.g. us-east-1 or eu-west-2")
        return value

    _registry_url = field_validator("registry_url")(_check_endpoint)

    @model_validator(mode="after")
    def _kind(self) -> TargetSettings:
        if self.kind == "registry":
            if not self.registry_url:
                raise ValueError("kind: registry needs registry_url (e.g. http://127.0.0.1:5002)")
            if "repository" in self.model_fields_set or self.region or self.replicate_to:
                raise ValueError(
                    "region, repository and replicate_to settings apply to kind: ecr only"
                )
        elif self.credentials is not None:
            raise ValueError(
                "kind: ecr takes no credentials: mirror uses the AWS credential chain "
                "(instance or task role, AWS_PROFILE, environment)"
            )
        if self.replicate_to and not self.repository_prefix.strip("/"):
            raise ValueError(
                "replicate_to needs a repository_prefix: ECR replicates the repositories "
                "whose names start with it, and with none it would replicate every one"
            )
        if self.registry and not ecr_registry_region(self.registry) and self.kind == "ecr":
            raise ValueError("write the ECR registry as ACCOUNT.dkr.ecr.REGION.amazonaws.com")
        return self

    @field_validator("repository_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not _PREFIX_RE.match(value):
            raise ValueError("the prefix must be lowercase path components separated by /")
        return value


class PublishSettings(Section):
    """Where the daemon republishes the CodeBuild include after a pass that moved a digest."""

    output: str
    format: Literal["buildspec", "script", "build-context"] = "script"


# CloudWatch: a namespace of letters, digits and . - _ / # : (at most 255), not AWS/.
_NAMESPACE_RE = re.compile(r"^(?!AWS/)[A-Za-z0-9.\-_/#:]{1,255}$")


def check_namespace(value: str) -> str:
    if not _NAMESPACE_RE.match(value):
        raise ValueError(
            f"invalid CloudWatch namespace {value!r}: use letters, digits and . - _ / # : "
            "(at most 255), not starting with AWS/"
        )
    return value


def check_dimension_value(value: str) -> str:
    if not 1 <= len(value) <= 1024 or not value.isascii() or not value.isprintable():
        raise ValueError(f"invalid metric dimension value {value!r}: 1-1024 printable ASCII")
    return value


class MetricsSettings(Section):
    """CloudWatch Embedded Metric Format documents in the JSON log: metrics with no agent."""

    emf: bool = True
    namespace: str = "mirror"  # MIRROR_METRICS_NAMESPACE overrides it
    service: str = "mirror"  # the Service dimension, one per deployment; MIRROR_METRICS_SERVICE

    _namespace = field_validator("namespace")(check_namespace)
    _service = field_validator("service")(check_dimension_value)


class DaemonSettings(Section):
    every: str | None = None  # 30s, 10m, 6h
    at: list[str] | None = None  # daily times, UTC: ["02:00", "14:00"]
    health_port: int = Field(default=8080, ge=1, le=65535)
    # The ECS health check runs inside the container: loopback is enough. Set "0.0.0.0"
    # only for a scraper that reads /metrics from outside.
    health_address: str = "127.0.0.1"
    grace_seconds: float = Field(default=25, ge=0, le=120)
    unhealthy_after: int = Field(default=3, ge=1)  # scheduled intervals without a success
    # After a pass in which images failed, they are tried again this much later (doubling
    # while they keep failing, never later than the next scheduled pass).
    retry_failed: str = "1m"
    publish_buildspec: PublishSettings | None = None

    @field_validator("retry_failed")
    @classmethod
    def _retry_failed(cls, value: str) -> str:
        if parse_duration(value) < 1:
            raise ValueError("retry_failed must be at least 1s")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 1:
            raise ValueError("every must be at least 1s")
        return value

    @field_validator("at")
    @classmethod
    def _at(cls, value: list[str] | None) -> list[str] | None:
        for time_of_day in value or []:
            if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", time_of_day):
                raise ValueError(f"invalid time {time_of_day!r}: write HH:MM (UTC)")
        if value is not None and not value:
            raise ValueError("at needs at least one time")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> DaemonSettings:
        if self.every is not None and self.at is not None:
            raise ValueError("give either every or at, not both")
        return self

    @property
    def interval_seconds(self) -> float:
        """The longest gap between two scheduled passes."""
        if self.at:
            minutes = sorted(int(t[:2]) * 60 + int(t[3:]) for t in self.at)
            gaps = [b - a for a, b in itertools.pairwise(minutes)]
            gaps.append(24 * 60 - minutes[-1] + minutes[0])
            return max(gaps) * 60.0
        return parse_duration(self.every or DEFAULT_EVERY)


class EventBridgeSink(Section):
    bus: str  # a custom event bus name or ARN
    source: str = "mirror"


class SnsSink(Section):
    topic_arn: str

    @field_validator("topic_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not re.match(r"^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$", value):
            raise ValueError("write the topic ARN: arn:aws:sns:REGION:ACCOUNT:NAME")
        return value


class WebhookSink(Section):
    url: str
    secret_env: str | None = None  # variable holding the HMAC key for X-Mirror-Signature-256

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("write an http(s) URL")
        return value


class EventSink(Section):
    """One destination for change events: exactly one of eventbridge, sns, webhook."""

    eventbridge: EventBridgeSink | None = None
    sns: SnsSink | None = None
    webhook: WebhookSink | None = None
    attempts: int = Field(default=5, ge=1, le=20)  # deliveries tried before giving up

    @model_validator(mode="after")
    def _one(self) -> EventSink:
        if sum(x is not None for x in (self.eventbridge, self.sns, self.webhook)) != 1:
            raise ValueError("give exactly one of eventbridge, sns, webhook")
        return self


class PruneSettings(Section):
    """`mirror prune`: what counts as in use, and what is never deleted."""

    enabled: bool = False  # the daemon prunes after a pass without failures
    keep_days: int = Field(default=7, ge=0)
    clusters: list[str] = Field(default_factory=lambda: ["*"])  # ECS cluster names, fnmatch
    families: list[str] = Field(default_factory=lambda: ["*"])  # task definition families
    keep_task_definition_revisions: int = Field(default=5, ge=1)
    functions: list[str] = Field(default_factory=lambda: ["*"])  # Lambda function names
    keep_function_versions: int = Field(default=5, ge=1)
    extra_references: str | None = None  # a file of image URIs in use outside ECS and Lambda
    # The only repositories prune may consider; required with an empty repository_prefix.
    repositories: list[str] | None = None
    # Lock files and published includes (paths, s3://, ssm:/): every digest they pin stays.
    protect: list[str] = Field(default_factory=list)


def _check_tag_patterns(value: list[str] | None) -> list[str] | None:
    for pattern in value or []:
        if not pattern or not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!-]+", pattern):
            raise ValueError(f"invalid tag pattern {pattern!r}: write a glob such as 'v*.*.*'")
    return value


def _check_refresh(value: str | None) -> str | None:
    if value is not None and parse_duration(value) < 1:
        raise ValueError("refresh must be at least 1s")
    return value


ARTIFACT_KINDS = ("signature", "attestation", "sbom")


class ArtifactSettings(Section):
    """Which artifacts attached to an image are copied with it: kinds (signature,
    attestation, sbom), exact artifactType media types, or "*" for every referrer."""

    include: list[str] = Field(default_factory=lambda: list(ARTIFACT_KINDS))
    exclude: list[str] = Field(default_factory=list)
    require: bool = False  # an image without a signature upstream is reported, not mirrored

    @field_validator("include", "exclude")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in (*ARTIFACT_KINDS, "*") and "/" not in item:
                raise ValueError(
                    f"unknown artifact kind {item!r}: write signature, attestation, sbom, "
                    "'*', or an artifactType media type such as application/spdx+json"
                )
        return value


class Defaults(Section):
    platforms: Platforms = "all"
    immutable_tags: list[str] = Field(default_factory=list)  # globs: never re-checked upstream
    artifacts: ArtifactSettings | None = None  # None: images only

    _immutable = field_validator("immutable_tags")(_check_tag_patterns)

    _platforms = field_validator("platforms")(_check_platforms)


class Concurrency(Section):
    images: int = Field(default=4, ge=1, le=64)
    blobs: int = Field(default=4, ge=1, le=64)


def _check_timeout(value: str) -> str:
    if parse_duration(value) < 1:
        raise ValueError("a timeout must be at least 1s")
    return value


class TimeoutSettings(Section):
    """How long a registry may keep mirror waiting (oci/limits.py says why each exists)."""

    connect: str = "10s"  # to open a connection
    read: str = "30s"  # the longest silence within one response
    metadata: str = "30s"  # one tag listing (every page), one image's checks, one manifest
    image: str = "30m"  # copying one image, blobs included
    unreachable: str = "10s"  # a registry refusing every connection, before its images fail

    _durations = field_validator("connect", "read", "metadata", "image", "unreachable")(
        _check_timeout
    )

    def resolved(self) -> Timeouts:
        return Timeouts(
            connect=parse_duration(self.connect),
            read=parse_duration(self.read),
            metadata=parse_duration(self.metadata),
            image=parse_duration(self.image),
            unreachable=parse_duration(self.unreachable),
        )


def _check_variant(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}", value):
        raise ValueError(
            f"invalid variant {value!r}: the part of a tag after '<version>-', "
            "such as slim, alpine or slim-bookworm"
        )
    return value


def _check_semver(value: str | None) -> str | None:
    if value is not None:
        parse_semver_range(value)
    return value


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
    return value


class TagRule(Section):
    """Tags chosen from the upstream tag list; the rules combine (all must hold)."""

    semver: str | None = None  # an npm range: ">=20 <23", "^20 || ^22", "~3.12"
    latest: int | None = Field(default=None, ge=1)
    regex: str | None = None
    # `slim`: only tags `<version>-slim`, their version part compared as a version; a list
    # is several streams, each picked on its own
    variant: str | list[str] | None = None
    per: Literal["major", "minor"] | None = None  # latest N of each major or minor line
    floating: bool = False  # also the chosen lines' floating tags: 22-alpine, 22.12-alpine

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty variant list selects nothing")
            for item in value:
                _check_variant(item)
        elif value is not None:
            _check_variant(value)
        return value

    @property
    def variants(self) -> tuple[str, ...]:
        return (self.variant,) if isinstance(self.variant, str) else tuple(self.variant or ())

    _semver = field_validator("semver")(_check_semver)
    _regex = field_validator("regex")(_check_regex)

    @model_validator(mode="after")
    def _not_empty(self) -> TagRule:
        if self.semver is None and self.latest is None and self.regex is None:
            raise ValueError("a tag rule needs semver, latest and/or regex (variant with them)")
        if self.per is not None and self.latest is None:
            raise ValueError(
                f"per: {self.per} says what latest counts in: add latest (latest: 2, "
                f"per: {self.per} keeps the 2 newest of each {self.per} line)"
            )
        if self.floating and self.semver is None and self.latest is None:
            raise ValueError("floating adds the floating tags of versions semver or latest chose")
        return self


Tags = Annotated[
    Annotated[list[str], Tag("~list")] | Annotated[TagRule, Tag("~rule")],
    _by_kind("~list", "~rule"),
]


class ImageSpec(Section):
    image: str
    tags: Tags | None = None
    platforms: Platforms | None = None
    immutable_tags: list[str] | None = None  # overrides defaults.immutable_tags
    refresh: str | None = None  # the daemon checks this image this often (default: every pass)
    artifacts: ArtifactSettings | None = None  # overrides defaults.artifacts

    _image = field_validator("image")(_check_reference)
    _platforms = field_validator("platforms")(_check_platforms)
    _immutable = field_validator("immutable_tags")(_check_tag_patterns)
    _refresh = field_validator("refresh")(_check_refresh)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | TagRule | None) -> list[str] | TagRule | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty tag list selects nothing")
            for tag in value:
                if not is_tag(tag):
                    raise ValueError(
                        f"invalid tag {tag!r}: tags are ASCII letters, digits and . _ - "
                        "(at most 128, not starting with . or -)"
                    )
        return value

    @model_validator(mode="after")
    def _tags_or_tag(self) -> ImageSpec:
        written = parse_reference(self.image, default_tag=None)
        if self.tags is not None and (written.tag or written.digest):
            raise ValueError("give the tag in `image` or in `tags`, not both")
        return self


ImageRef = Annotated[str, AfterValidator(_check_reference), Tag("~ref")]
ImageEntrySpec = Annotated[
    ImageRef | Annotated[ImageSpec, Tag("~spec")],
    Discriminator(lambda v: "~ref" if isinstance(v, str) else "~spec"),
]


class CoordinationSettings(Section):
    """Several mirror processes (daemon tasks, shards, one-shot syncs, `mirror copy`) on
    one DynamoDB table: one upstream quota, one copier per repository at a time, one
    leader. The table is in the target's Region; mirror creates it when it is missing."""

    dynamodb_table: str
    # A process that dies holds its work this long before another takes it over.
    lease_seconds: int = Field(default=60, ge=5, le=3600)

    @field_validator("dynamodb_table")
    @classmethod
    def _table(cls, value: str) -> str:
        # DynamoDB's naming rules (Developer Guide, "Supported data types and naming rules")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", value):
            raise ValueError(
                f"invalid DynamoDB table name {value!r}: 3 to 255 letters, digits, _ - or ."
            )
        return value


_QUEUE_URL_RE = re.compile(r"^https?://[^/\s]+/(\d{12})/([A-Za-z0-9_-]{1,80})$")
_SQS_HOST_RE = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def queue_region(queue_url: str) -> str | None:
    """The Region of an SQS queue URL (`https://sqs.REGION.amazonaws.com/...`); None for
    another endpoint (a VPC endpoint's, a test's)."""
    found = _SQS_HOST_RE.match(queue_url)
    return found[1] if found else None


# The queue a deployment made for copy on miss (the template's OnDemandQueue), for an
# `on_demand` section that names none.
ON_DEMAND_QUEUE_ENV = "MIRROR_ON_DEMAND_QUEUE_URL"


def on_demand_queue_url(settings: OnDemandSettings | None) -> str | None:
    """The queue builds report misses to: `on_demand.queue_url`, else the deployment's;
    None without `on_demand` or without either."""
    if settings is None:
        return None
    return settings.queue_url or os.environ.get(ON_DEMAND_QUEUE_ENV) or None


def queue_arn(queue_url: str, partition: str, region: str) -> str:
    """The queue's ARN; `region` where the URL does not say it."""
    found = _QUEUE_URL_RE.match(queue_url)
    assert found is not None, "the config checked the URL"
    return f"arn:{partition}:sqs:{queue_region(queue_url) or region}:{found[1]}:{found[2]}"


class OnDemandTags(Section):
    """Which tags of an allowed image a build may ask for: a semver range and/or a regex,
    as in a tag rule; every tag when absent."""

    semver: str | None = None
    regex: str | None = None

    _semver = field_validator("semver")(_check_semver)
    _regex = field_validator("regex")(_check_regex)


def _check_image_pattern(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._:/*?-]*", value) or "/" not in value:
        raise ValueError(
            f"invalid image pattern {value!r}: write registry/repository with * or ?, such as "
            "docker.io/library/* or quay.io/prometheus/*"
        )
    return value


class OnDemandSettings(Section):
    """Copy on miss: builds report images nobody mirrored to an SQS queue; the daemon
    copies those its policy allows, and keeps them fresh from then on."""

    # The queue builds send to (an SQS queue URL); the deploy template's, from
    # MIRROR_ON_DEMAND_QUEUE_URL, when absent here.
    queue_url: str | None = None
    allow: list[str] = Field(min_length=1)  # image patterns a build may ask for
    tags: OnDemandTags | None = None  # the tags it may ask for of them; any when absent
    max_new_per_day: int = Field(default=50, ge=1, le=10_000)
    # per sender: the IAM role (or user) SQS says sent the request, which the request
    # cannot forge; the builds of one account usually share one
    max_new_per_sender_per_day: int = Field(default=10, ge=1, le=10_000)

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and not _QUEUE_URL_RE.match(value):
            raise ValueError(
                f"invalid SQS queue URL {value!r}: write "
                "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
            )
        return value

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _check_image_pattern(pattern)
        return value


class MirrorConfig(Section):
    version: Literal[1]
    target: TargetSettings
    registries: dict[str, RegistrySettings] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    concurrency: Concurrency = Concurrency()
    timeouts: TimeoutSettings = TimeoutSettings()
    daemon: DaemonSettings = DaemonSettings()
    metrics: MetricsSettings = MetricsSettings()
    prune: PruneSettings | None = None
    events: list[EventSink] = Field(default_factory=list)  # where moved-tag events go
    coordination: CoordinationSettings | None = None  # None: this process runs alone
    on_demand: OnDemandSettings | None = None  # None: a build's miss is only a warning
    images: list[ImageEntrySpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _pull_through_cache(self) -> MirrorConfig:
        for host, settings in self.registries.items():
            if settings.mode != "pull-through-cache":
                continue
            where = ["registries", host, "mode"]
            upstream = ptc_upstream(host)
            if self.target.kind != "ecr":
                problem = "pull-through-cache needs target kind: ecr"
            elif upstream is None:
                problem = (
                    f"ECR pull-through cache cannot cache {host}; use mode: copy "
                    "(ECR caches docker.io, ghcr.io, registry.gitlab.com, quay.io, "
                    "registry.k8s.io, public.ecr.aws, *.azurecr.io, cgr.dev and other ECR "
                    "registries)"
                )
            elif upstream.needs_credentials and not settings.credential_list:
                problem = f"ECR caches {host} only with credentials: add credentials"
            elif upstream.registry == "ecr" and settings.role_arn is None:
                where = ["registries", host]
                problem = (
                    f"ECR caches another ECR registry ({host}) with an IAM role it "
                    "assumes: add role_arn"
                )
            elif upstream.registry == "ecr" and settings.credential_list:
                problem = "ECR pulls from another ECR registry with role_arn, not credentials"
            elif len(settings.credential_list) > 1:
                problem = "a pull-through cache rule takes one credential, not a pool"
            elif settings.url is not None:
                problem = "a pull-through cache rule reaches the real upstream: remove url"
            else:
                continue
            raise PydanticCustomError("config", "{problem}", {"problem": problem, "path": where})
        return self

    @model_validator(mode="after")
    def _prune_needs_ecr(self) -> MirrorConfig:
        if self.prune is None:
            return self
        problem = ""
        if self.target.kind != "ecr":
            problem = "prune works through the ECR API: it needs target kind: ecr"
        elif not self.target.repository_prefix.strip("/") and self.prune.repositories is None:
            problem = (
                "with an empty target.repository_prefix every repository in the account and "
                "Region would be a prune candidate: set a prefix, or list the repositories "
                "prune may touch in prune.repositories"
            )
        if problem:
            raise PydanticCustomError(
                "config", "{problem}", {"problem": problem, "path": ["prune"]}
            )
        return self

    @field_validator("registries")
    @classmethod
    def _hosts(cls, value: dict[str, RegistrySettings]) -> dict[str, RegistrySettings]:
        for host in value:
            if not _HOST_KEY_RE.match(host):
                raise ValueError(f"registry key {host!r} is not a host name (e.g. docker.io)")
        return value
