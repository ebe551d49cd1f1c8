"""A faithful local ECR: moto in server mode for the control plane, and a distribution
registry with htpasswd `AWS` / `123456789012-auth-token` (moto's token) as the data plane.
The server runs in this process, which lets it learn what moto 5.2 lacks and AWS documents,
and refuse what AWS refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from moto.ecr.exceptions import ServiceException
from moto.server import ThreadedMotoServer

from tests.support.moto_alarms import teach_moto_alarms
from tests.support.moto_dynamodb import teach_moto_atomic_dynamodb
from tests.support.registry import LocalRegistry, free_port

__all__ = [
    "ACCOUNT",
    "ECR_CREDS",
    "REGION",
    "FakeEcr",
    "InvalidTagParameterException",
    "fake_ecr",
    "moto_server",
    "refuse",
]

ACCOUNT = "123456789012"
REGION = "us-east-1"
ECR_CREDS = f"AWS:{ACCOUNT}-auth-token"


class FakeEcr:
    def __init__(self, endpoint: str, data_plane: LocalRegistry) -> None:
        self.endpoint = endpoint
        self.data_plane = data_plane
        self.host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }


# ECR's lifecycle rules that moto 5.2 predates (it knows only `expire` with
# imageCountMoreThan / sinceImagePushed). Each rule is the Amazon ECR user guide's:
# "Lifecycle policy properties" (lifecycle_policy_parameters.html), "Examples of lifecycle
# policies" (lifecycle_policy_examples.html: "Filtering on last pulled time" archives, it
# never expires) and "Archiving an image" (archive-image.html: 90 days in archive before
# a policy may delete). Written here apart from mirror's own validator, so that mirror's
# output is checked against the rules rather than against itself.
_ECR_COUNT_TYPES = {  # countType -> (actions ECR allows with it, storage class it selects)
    "imageCountMoreThan": ({"expire", "transition"}, "standard"),
    "sinceImagePushed": ({"expire", "transition"}, "standard"),
    "sinceImagePulled": ({"transition"}, "standard"),
    "sinceImageTransitioned": ({"expire"}, "archive"),
}


def _ecr_lifecycle_violation(policy: dict[str, Any]) -> str | None:
    """The first documented rule `policy` breaks, in moto's own structure checks' terms."""
    rules = policy["rules"]
    priorities = [rule["rulePriority"] for rule in rules]
    if len(set(priorities)) != len(priorities):
        return "rulePriority must be unique"
    for rule in rules:
        selection, action = rule["selection"], rule["action"]
        status, count_type = selection["tagStatus"], selection["countType"]
        lists = [k for k in ("tagPatternList", "tagPrefixList") if k in selection]
        if status == "tagged" and not lists:
            return "tagPrefixList or tagPatternList is required when tagStatus is tagged"
        if status != "tagged" and lists:
            return f"{lists[0]} is not allowed when tagStatus is {status}"
        if len(lists) == 2:
            return "tagPatternList and tagPrefixList cannot both be specified"
        if any(p.count("*") > 4 for p in selection.get("tagPatternList", [])):
            return "a tagPatternList string has more than 4 wildcards"
        if status == "any" and rule["rulePriority"] != max(priorities):
            return "a rule with tagStatus any must have the highest rulePriority"
        if count_type == "imageCountMoreThan" and "countUnit" in selection:
            return "countUnit is not allowed with imageCountMoreThan"
        if count_type != "imageCountMoreThan" and selection.get("countUnit") != "days":
            return f"countUnit days is required with {count_type}"
        actions, storage = _ECR_COUNT_TYPES[count_type]
        if selection.get("storageClass", "standard") != storage:
            return f"storageClass must be {storage} with {count_type}"
        if action["type"] not in actions:
            return f"action {action['type']} is not supported with {count_type}"
        if (action["type"] == "transition") != ("targetStorageClass" in action):
            return "targetStorageClass goes with, and only with, a transition"
        if action.get("targetStorageClass", "archive") != "archive":
            return "targetStorageClass must be archive"
        if count_type == "sinceImageTransitioned" and selection["countNumber"] < 90:
            return "archived images cannot be expired before 90 days"
    return None


def _teach_moto_ecr_lifecycle_rules() -> None:
    """Extend moto's schema with the properties and values ECR documents, then refuse,
    as ECR does with InvalidParameterException, every combination ECR's rules forbid.
    The server runs in this process, so its validator can be taught."""
    from moto.ecr import policy_validation as moto_rules

    if getattr(moto_rules, "ecr_rules_taught", False):
        return
    moto_rules.VALID_ACTION_TYPE_VALUES = {"expire", "transition"}
    moto_rules.VALID_ACTION_PROPERTIES = {"type", "targetStorageClass"}
    moto_rules.VALID_SELECTION_PROPERTIES = {*moto_rules.VALID_SELECTION_PROPERTIES, "storageClass"}
    moto_rules.VALID_SELECTION_COUNT_TYPE_VALUES = set(_ECR_COUNT_TYPES)
    validator = moto_rules.EcrLifecyclePolicyValidator
    structure_checks = validator.validate

    def validate(self: Any) -> None:
        structure_checks(self)
        violation = _ecr_lifecycle_violation(self._policy_json)
        if violation is not None:
            raise moto_rules.InvalidParameterException(
                f"{self.INVALID_PARAMETER_ERROR_MESSAGE}{violation}'"
            )

    validator.validate = validate
    moto_rules.ecr_rules_taught = True


class InvalidTagParameterException(ServiceException):
    """ECR's answer to a tag it will not take (moto has no such exception)."""

    code = "InvalidTagParameterException"


def _tag_violation(tags: list[dict[str, str]] | None) -> str | None:
    """ECR's tag rules (ECR API reference, Tag and TagResource): keys of 1 to 128 and
    values of up to 256 characters, at most 50 tags, and `aws:` reserved for AWS."""
    tags = tags or []
    if len(tags) > 50:
        return "a resource has at most 50 tags"
    for tag in tags:
        key, value = tag.get("Key", ""), tag.get("Value", "")
        if not 1 <= len(key) <= 128 or len(value) > 256:
            return (
                "Tag keys can have a maximum character length of 128 characters, and tag "
                "values can have a maximum length of 256 characters."
            )
        if key.lower().startswith("aws:"):
            return "the aws: prefix is reserved for AWS use"
    return None


def _teach_moto_ecr_tag_rules() -> None:
    """moto stores any tag; ECR refuses the ones its rules forbid, on CreateRepository
    and TagResource alike, with InvalidTagParameterException."""
    from moto.ecr.models import ECRBackend

    if getattr(ECRBackend, "ecr_tag_rules_taught", False):
        return
    create, tag = ECRBackend.create_repository, ECRBackend.tag_resource

    def checked_create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_tags(kwargs.get("tags"))
        return create(self, *args, **kwargs)

    def checked_tag(self: Any, arn: str, tags: list[dict[str, str]]) -> Any:
        _refuse_tags(tags)
        return tag(self, arn, tags)

    ECRBackend.create_repository = checked_create  # type: ignore[method-assign]
    ECRBackend.tag_resource = checked_tag  # type: ignore[method-assign]
    ECRBackend.ecr_tag_rules_taught = True


def _refuse_tags(tags: list[dict[str, str]] | None) -> None:
    violation = _tag_violation(tags)
    if violation is not None:
        raise InvalidTagParameterException(violation)


def _teach_moto_ecr_account_settings() -> None:
    """moto has no GetAccountSetting / PutAccountSetting (server mode answers 500). ECR's
    blob mounting is opt-in ("Blob mounting", ECR user guide): BLOB_MOUNTING reads
    DISABLED until it is put ENABLED; an unknown name is InvalidParameterException."""
    from moto.core.responses import ActionResult
    from moto.ecr.exceptions import InvalidParameterException
    from moto.ecr.responses import ECRResponse

    if hasattr(ECRResponse, "get_account_setting"):
        return
    defaults = {"BLOB_MOUNTING": "DISABLED", "BASIC_SCAN_TYPE_VERSION": "AWS_NATIVE"}

    def settings(self: Any) -> dict[str, str]:
        backend = self.ecr_backend
        if not hasattr(backend, "account_settings"):
            backend.account_settings = dict(defaults)
        return backend.account_settings  # type: ignore[no-any-return]

    def get_account_setting(self: Any) -> Any:
        name = self._get_param("name")
        if name not in defaults:
            raise InvalidParameterException(f"Invalid account setting name: {name}")
        return ActionResult({"name": name, "value": settings(self)[name]})

    def put_account_setting(self: Any) -> Any:
        name, value = self._get_param("name"), self._get_param("value")
        if name != "BLOB_MOUNTING" or value not in ("ENABLED", "DISABLED"):
            raise InvalidParameterException(f"Invalid account setting: {name}={value}")
        settings(self)[name] = value
        return ActionResult({"name": name, "value": value})

    ECRResponse.get_account_setting = get_account_setting  # type: ignore[attr-defined]
    ECRResponse.put_account_setting = put_account_setting  # type: ignore[attr-defined]


def _teach_moto_s3_expected_owner() -> None:
    """moto ignores ExpectedBucketOwner. S3 refuses the request with 403 AccessDenied when
    the bucket belongs to another account (S3 user guide, "Verifying bucket ownership with
    bucket owner condition"); every object request is checked here as S3 checks it."""
    from moto.s3.responses import S3Response

    if getattr(S3Response, "expected_owner_taught", False):
        return
    handle = S3Response._key_response

    def checked(self: Any, request: Any, full_url: str) -> Any:
        expected = request.headers.get("x-amz-expected-bucket-owner")
        if expected is not None and expected != self.current_account:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                "<Message>Access Denied</Message></Error>"
            )
            return 403, {"Content-Type": "application/xml"}, body
        return handle(self, request, full_url)

    S3Response._key_response = checked  # type: ignore[method-assign]
    S3Response.expected_owner_taught = True


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on 127.0.0.1; yields its endpoint URL."""
    _teach_moto_ecr_lifecycle_rules()
    _teach_moto_ecr_tag_rules()
    _teach_moto_ecr_account_settings()
    _teach_moto_s3_expected_owner()
    teach_moto_alarms()
    teach_moto_atomic_dynamodb()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._port}"
    finally:
        server.stop()


@contextmanager
def fake_ecr(endpoint: str) -> Iterator[FakeEcr]:
    """A fresh ECR on a running moto server: control plane reset, new data plane."""
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
    with LocalRegistry(htpasswd=("AWS", f"{ACCOUNT}-auth-token")) as registry:
        yield FakeEcr(endpoint, registry)


def refuse(
    monkeypatch: Any,
    operation: str,
    message: str,
    *,
    error: type[Exception] | None = None,
    when: Callable[..., bool] = lambda **_: True,
) -> Callable[[], None]:
    """ECR answering `operation` (ECRBackend's method: put_lifecycle_policy,
    set_repository_policy, ...) with `error` (InvalidParameterException), as ECR answers
    a setting it will not take, for the calls `when(**arguments)` picks; returns what
    lifts the refusal (the test's end lifts it too)."""
    from moto.ecr.exceptions import InvalidParameterException
    from moto.ecr.models import ECRBackend

    original = getattr(ECRBackend, operation)
    refusal = error or InvalidParameterException

    def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        if when(**kwargs):
            raise refusal(message)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ECRBackend, operation, refused)
    return lambda: monkeypatch.setattr(ECRBackend, operation, original)
