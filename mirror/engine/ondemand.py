"""Copy on miss: a build's report of an image nobody mirrored, read at the boundary, and
the `on_demand` policy that says whether the daemon copies it.

A report is untrusted input: any build that may send to the queue can put anything in
one. It is a JSON object of at most MAX_REQUEST_BYTES with known keys only; the image
must parse as an OCI reference, the project and account must look like CodeBuild's and
AWS's, and who sent it is what SQS says (`SenderId`), not what the body claims. Nothing
from it reaches a log or the target unless it passed those checks.

A refusal is written where the include that asked can read it without an AWS call: a
tiny OCI manifest in the target (REFUSALS_REPOSITORY, tagged by the image's key) whose
annotations are the reason, from a fixed set of sentences, and the time it was written.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass

from mirror.config import Config
from mirror.config.model import OnDemandSettings
from mirror.config.selection import select_tags
from mirror.errors import MirrorError
from mirror.oci.client import RegistryClient
from mirror.oci.reference import Reference, parse_reference
from mirror.oci.types import parse_manifest

__all__ = [
    "MAX_REQUEST_BYTES",
    "REFUSALS_REPOSITORY",
    "REFUSED_ANNOTATION",
    "REFUSED_AT_ANNOTATION",
    "InvalidRequestError",
    "MissRequest",
    "Verdict",
    "judge",
    "parse_request",
    "refusal_tag",
    "refusals_repository",
    "write_refusal",
]

MAX_REQUEST_BYTES = 4096
REFUSALS_REPOSITORY = "on-demand/refused"  # under target.repository_prefix
REFUSED_ANNOTATION = "dev.mirror.on-demand.refused"
# when, in epoch seconds: the include heeds only a refusal written after its report, so
# one from before the policy changed (or from yesterday's cap) does not stop a build
REFUSED_AT_ANNOTATION = "dev.mirror.on-demand.refused-at"
_KEYS = frozenset({"version", "image", "project", "account", "build", "time"})
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_BUILD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,300}")
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SENDER_RE = re.compile(r"[A-Za-z0-9:._@-]{1,128}")


class InvalidRequestError(MirrorError):
    """A report that is not one mirror's include sends: dropped, and only counted."""

    code = "INVALID_REQUEST"


@dataclass(frozen=True)
class MissRequest:
    image: Reference  # parsed: the registry, repository and tag or digest it names
    written: str  # as the build wrote it: the refusal's key is computed from this
    sender: str  # who SQS says sent it
    project: str = ""  # the CodeBuild project, as the build said
    account: str = ""  # its account, as the build said
    build: str = ""
    sent: str = ""  # when, as the build said (ISO 8601, UTC)


def _optional(data: dict[str, object], key: str, pattern: re.Pattern[str]) -> str:
    value = data.get(key, "")
    if value in ("", None):
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidRequestError(f"field {key!r} is not what an include sends")
    return value


def parse_request(body: object, sender: object) -> MissRequest:
    """The report in an SQS message body; InvalidRequestError for anything else."""
    if not isinstance(body, str) or len(body.encode("utf-8", "replace")) > MAX_REQUEST_BYTES:
        raise InvalidRequestError("not a report: too large, or not text")
    if not isinstance(sender, str) or not _SENDER_RE.fullmatch(sender):
        raise InvalidRequestError("no sender SQS can name")
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidRequestError("not a report: not JSON") from None
    if not isinstance(data, dict) or not set(data) <= _KEYS or data.get("version") != 1:
        raise InvalidRequestError("not a report: unknown fields or version")
    written = data.get("image")
    if not isinstance(written, str) or not 0 < len(written) <= 512 or written != written.strip():
        raise InvalidRequestError("no image")
    try:
        image = parse_reference(written)
    except MirrorError:
        raise InvalidRequestError("the image is not an OCI reference") from None
    return MissRequest(
        image=image,
        written=written,
        sender=sender,
        project=_optional(data, "project", _PROJECT_RE),
        account=_optional(data, "account", _ACCOUNT_RE),
        build=_optional(data, "build", _BUILD_RE),
        sent=_optional(data, "time", _TIME_RE),
    )


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # one of the fixed sentences below: it reaches the build's log


NOT_ALLOWED = "the image is not in on_demand.allow"
TAG_NOT_ALLOWED = "the tag is not one on_demand.tags allows"
DAY_CAP = "on_demand.max_new_per_day images were added today"
SENDER_CAP = "on_demand.max_new_per_sender_per_day images were added for this sender today"


def judge(settings: OnDemandSettings, image: Reference) -> Verdict:
    """Whether the policy lets the daemon copy `image` (the caps are the store's)."""
    name = image.name
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.allow):
        return Verdict(False, NOT_ALLOWED)
    rule = settings.tags
    if rule is not None and image.tag is not None:
        picked = select_tags(
            [image.tag],
            semver_range=rule.semver,
            latest=None,
            regex=rule.regex,
            variant=(),
            per=None,
            floating=False,
        )
        if image.tag not in picked:
            return Verdict(False, TAG_NOT_ALLOWED)
    return Verdict(True, "")


def refusal_tag(written: str) -> str:
    """The tag a refusal of `written` (as the build wrote it) is kept under: the include
    computes the same from the same text with sha256sum."""
    return "r-" + hashlib.sha256(written.encode()).hexdigest()


_EMPTY_CONFIG = (
    "application/vnd.oci.empty.v1+json",
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    2,
)


def refusals_repository(config: Config) -> str:
    """Where refusals are kept in the target: REFUSALS_REPOSITORY under the prefix."""
    return f"{config.model.target.repository_prefix.strip('/')}/{REFUSALS_REPOSITORY}".strip("/")


def write_refusal(
    target: RegistryClient, repository: str, written: str, reason: str, *, at: float
) -> None:
    """A manifest the include can read (`docker manifest inspect`) saying why `written`
    was refused and when: an OCI artifact with the empty config, the reason and the
    time as annotations."""
    media_type, digest, size = _EMPTY_CONFIG
    if not target.blob_exists(repository, digest):
        location = target.start_upload(repository)
        if location is not None:
            target.finish_upload(location, digest, size, [b"{}"])
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.dev.mirror.refusal.v1",
            "config": {"mediaType": media_type, "digest": digest, "size": size},
            "layers": [{"mediaType": media_type, "digest": digest, "size": size}],
            "annotations": {REFUSED_ANNOTATION: reason, REFUSED_AT_ANNOTATION: str(int(at))},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    manifest = parse_manifest(raw, "application/vnd.oci.image.manifest.v1+json")
    target.put_manifest(repository, refusal_tag(written), manifest)
