"""The error tree, and the one place that decides what is worth retrying.

    MirrorError                 reason + hint (what to do); never carries a secret
    ├── ConfigError             bad config or command line: exit 2, nothing touched
    ├── BadReferenceError       an image reference that does not parse (a ConfigError)
    ├── IntegrityError          bytes that do not match their digest or size
    │   └── InvalidUpstreamDataError  registry data outside the OCI grammar or its limits
    ├── DeadlineExceededError   a listing or an image took longer than its deadline
    ├── InvalidTargetNameError  a target repository name the grammar cannot hold
    ├── UnavailableError        a registry that keeps refusing connections (the breaker)
    ├── DownloadCutError        a blob download cut again and again, past its reconnects
    ├── SelectionError          a tag rule or platform list that selects nothing upstream
    ├── UnsupportedError        content mirror does not copy (schema1, unknown media types)
    ├── ImmutableTagError       a tag moved upstream but the target refuses to move it
    └── RegistryError           a registry answered with an error status
        ├── NotFoundError           404 / MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN
        ├── AuthError               401 / 403, or a token request that failed
        ├── HeadUnsupportedError    a manifest HEAD the registry cannot answer (405, 501,
        │                           a 404 that is no registry's answer): a GET decides
        ├── TooManyRequestsError    429: a spent pull quota, or a request throttle
        ├── ServerError             5xx
        │   └── StorageError        5xx to an upload: the target could not store it
        └── TokenRealmUnavailableError  the token realm answered 429 or 5xx

Errors become exit codes only in the CLI.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx is imported where a request is made: `validate` never pays it
    import httpx

__all__ = [
    "AuthError",
    "BadReferenceError",
    "ConfigError",
    "CoordinationError",
    "DeadlineExceededError",
    "DownloadCutError",
    "HeadUnsupportedError",
    "ImmutableTagError",
    "IntegrityError",
    "InvalidTargetNameError",
    "InvalidUpstreamDataError",
    "MirrorError",
    "NotFoundError",
    "RegistryError",
    "SelectionError",
    "ServerError",
    "StorageError",
    "TokenRealmUnavailableError",
    "TooManyRequestsError",
    "UnavailableError",
    "UnsupportedError",
    "aws_hint",
    "error_from_response",
    "is_pull_quota",
    "is_retryable",
    "printable",
    "safe_url",
]


class MirrorError(Exception):
    """Base of every error mirror raises on purpose."""

    code = "MIRROR_ERROR"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(MirrorError):
    """The config file or the command line is wrong; nothing was touched."""

    code = "CONFIG"


class BadReferenceError(ConfigError):
    """An image reference that does not parse."""

    code = "BAD_REFERENCE"


class IntegrityError(MirrorError):
    """Content that does not match its digest or declared size."""

    code = "DIGEST_MISMATCH"


class InvalidUpstreamDataError(IntegrityError):
    """A registry sent something outside the OCI grammar or over a limit: a malformed
    digest or descriptor, a tag list that is not JSON, an oversized manifest, a Link or
    realm that is refused. It fails the image (or entry) it belongs to, nothing else."""

    code = "INVALID_UPSTREAM_DATA"


class DeadlineExceededError(MirrorError):
    """A tag listing or an image took longer than its deadline (`timeouts:`), for example
    a registry that drips a body one byte at a time."""

    code = "DEADLINE_EXCEEDED"


class UnavailableError(MirrorError):
    """A registry that refused connections again and again (oci/breaker.py): its images
    fail at once instead of each retrying on its own."""

    def __init__(self, message: str, *, code: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code


class DownloadCutError(MirrorError):
    """A blob download the upstream (or its CDN) kept cutting short, more often than
    mirror reconnects; the message names the upstream, not the target it was copied to."""

    code = "DOWNLOAD_CUT"


class InvalidTargetNameError(MirrorError):
    """An upstream name whose target name would break the grammar (a repository path
    longer than 255 characters once repository_prefix and the alias are added)."""

    code = "INVALID_TARGET_NAME"

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="shorten target.repository_prefix")


class SelectionError(MirrorError):
    """A tag rule or platform list that selects nothing of what the upstream has."""

    code = "NOTHING_SELECTED"


class UnsupportedError(MirrorError):
    """Content mirror does not copy, such as Docker schema1 manifests."""

    code = "UNSUPPORTED_MANIFEST"


class ImmutableTagError(MirrorError):
    """The upstream tag moved, and the target repository's tags are immutable."""

    code = "IMMUTABLE_TAG"


class CoordinationError(MirrorError):
    """The coordination table (`coordination.dynamodb_table`) cannot be used: it is not
    mirror's (another key schema), or DynamoDB refused or failed a call."""

    code = "COORDINATION"


class RegistryError(MirrorError):
    """A registry answered with an error; `code` is the registry's own error code."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        hint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code or f"HTTP_{status}"
        self.retry_after = retry_after


class NotFoundError(RegistryError):
    """The manifest, blob or repository does not exist."""


class AuthError(RegistryError):
    """Credentials are missing, wrong, or lack the permission asked for."""


class HeadUnsupportedError(RegistryError):
    """A manifest HEAD the registry cannot answer: 405 or 501 (no HEAD route), or a 404
    that is not a registry's JSON error (Nexus answers HEAD with an HTML page). Only a GET
    can tell whether the manifest exists."""


class TooManyRequestsError(RegistryError):
    """429. `quota`: a spent pull quota (Docker Hub's `TOOMANYREQUESTS` that comes with
    rate-limit headers or names the pull rate limit), waited out for the window; otherwise
    a request throttle (public.ecr.aws's "Rate exceeded", an abuse limit), retried in
    about a second and paced."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        hint: str = "",
        retry_after: float | None = None,
        quota: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, hint=hint, retry_after=retry_after)
        self.quota = quota


class ServerError(RegistryError):
    """5xx from the registry: usually transient."""


class StorageError(ServerError):
    """5xx from the target to an upload (a full disk, a failing storage backend). Retried
    a few times a pass, not by every blob: `retryable` turns false once the pass's
    allowance is spent, and the rest fail at once."""

    retryable = True


class TokenRealmUnavailableError(RegistryError):
    """The token realm throttled (429) or failed (5xx): transient, never the credentials."""


def printable(text: str, *, limit: int = 500) -> str:
    """Text from a registry made safe for a terminal and a log line: control characters
    (newlines, ANSI escapes, bidi overrides) shown as escapes, and the length bounded."""
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def safe_url(url: httpx.URL | str) -> str:
    """A URL fit for a message: no query string (presigned CDN URLs carry credentials there)."""
    import httpx

    parsed = httpx.URL(str(url))
    return printable(str(parsed.copy_with(query=None, fragment=None, userinfo=b"")))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP-date; the caller's own backoff applies


_ERROR_CODE_RE = re.compile(r"[A-Z0-9_]{1,64}", re.ASCII)


def _detail_reason(detail: object, depth: int = 0) -> str:
    """The why of an error's `detail`: a sentence (of a long Go error chain, `write
    /var/lib/registry/...: no space left on device`, its last link), or, where the detail
    is a Go error as an object (distribution's storage errors), its system error number
    (`Err`, such as 28 for a full disk), looked for a few levels down."""
    if isinstance(detail, str):
        detail = detail.strip()
        return detail if len(detail) <= 100 else detail.rsplit(": ", 1)[-1]
    if not isinstance(detail, dict) or depth > 3:
        return ""
    number = detail.get("Err")
    if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 4096:
        return os.strerror(number).lower()
    for value in detail.values():
        if isinstance(value, dict) and (reason := _detail_reason(value, depth + 1)):
            return reason
    return ""


def _registry_errors(body: bytes) -> tuple[str, str]:
    """The first (code, message) of an OCI error body, or ("", "") when there is none.

    The code must look like one (`MANIFEST_UNKNOWN`): it ends up in metrics labels and
    report fields. The message is escaped and shortened."""
    try:
        parsed = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", ""
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    first = errors[0]
    code = str(first.get("code") or "")
    message = printable(str(first.get("message") or ""), limit=300)
    reason = _detail_reason(first.get("detail"))
    if reason:  # distribution says why here: a full disk
        message += f" ({printable(reason, limit=200)})"
    return (code if _ERROR_CODE_RE.fullmatch(code) else ""), message


def is_pull_quota(code: str, message: str, headers: httpx.Headers) -> bool:
    """Whether a 429 says a pull quota is spent rather than that requests come too fast.

    Docker documents its pull limit as `TOOMANYREQUESTS` with a message that names the
    pull rate limit, on answers that carry `ratelimit-*` headers; its separate abuse limit
    is a plain 429. public.ecr.aws throttles with `TOOMANYREQUESTS: Rate exceeded` and no
    such headers: a throttle, gone in a second, not a six-hour window."""
    if code != "TOOMANYREQUESTS" or "rate exceeded" in message.lower():
        return False
    advertised = "ratelimit-remaining" in headers or "ratelimit-limit" in headers
    return advertised or "pull rate limit" in message.lower()


# For answers without an error body (every HEAD), the code the body would have carried.
_DEFAULT_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND"}
_HINTS = {
    401: "check the credentials configured for this registry",
    403: "the credentials lack permission for this repository",
    404: "check that the image and tag exist upstream",
    429: "the registry is throttling; mirror waits and retries",
}


def error_from_response(response: httpx.Response, what: str, body: bytes) -> RegistryError:
    """Turn an error response into a typed error about `what`; `body` is the start of its
    body, read within limits.ERROR_BODY_BYTES."""
    status = response.status_code
    code, detail = _registry_errors(body)
    message = f"{what}: {response.request.method} {safe_url(response.request.url)} -> {status}"
    if code or detail:
        message += f" {code} {detail}".rstrip()
    code = code or _DEFAULT_CODES.get(status, "")
    hint = _HINTS.get(status, "")
    cls: type[RegistryError] = RegistryError
    quota = False
    if status == 404:
        cls = NotFoundError
    elif status == 401 and response.request.headers.get("authorization", "").startswith("Bearer "):
        # A token the realm issued for this very scope, and still 401: Docker Hub answers
        # so for a repository that does not exist, as for one the account may not read.
        cls, code = AuthError, "NOT_FOUND_OR_DENIED"
        hint = (
            "check the image name first (Docker Hub answers 401 for a repository that does "
            "not exist), then that the credentials may pull it"
        )
    elif status in (401, 403):
        cls = AuthError
    elif status == 429:
        cls = TooManyRequestsError
        quota = is_pull_quota(code, detail, response.headers)
        code = code or "TOOMANYREQUESTS_PLAIN"
    elif status >= 500:
        cls = ServerError
        hint = "the registry failed; mirror retries transient errors"
    elif 300 <= status < 400:
        hint = "the registry redirected more often than mirror follows (5 hops)"
    retry_after = _retry_after(response)
    if cls is TooManyRequestsError:
        return TooManyRequestsError(
            message, status=status, code=code, hint=hint, retry_after=retry_after, quota=quota
        )
    return cls(message, status=status, code=code, hint=hint, retry_after=retry_after)


def is_retryable(exc: BaseException) -> bool:
    """True for failures that may pass on their own: network, 5xx, 429, a replayed stream."""
    if isinstance(exc, StorageError):
        return exc.retryable
    if isinstance(exc, ServerError | TooManyRequestsError | TokenRealmUnavailableError):
        return True
    if isinstance(exc, RegistryError):
        return exc.status in (408,)
    import httpx

    return isinstance(exc, httpx.TransportError | httpx.StreamConsumed)


def aws_hint(exc: BaseException) -> str:
    """What to do about a botocore error that is not the service's answer."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (
            "no usable AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY), or run where an IAM role applies (ECS task role, "
            "CodeBuild service role)"
        )
    if name in ("NoRegionError",):
        return "no AWS Region: set AWS_REGION, or target.region in the config"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return (
            "the AWS endpoint cannot be reached: check the network (a NAT or VPC endpoint) "
            "and AWS_ENDPOINT_URL"
        )
    return "check the AWS credentials, Region and network"
