"""The OCI distribution grammar: the one home of what a name, tag, digest or host may be.

Every string a registry or a lock file sends is checked here before any use, and the
config uses the same rules. Patterns are matched whole (`fullmatch`) and ASCII-only, so a
trailing newline or a non-ASCII letter that `$` or `\\w` would let through is refused.
Values that pass contain no `/` (tags), no `..` path segment, no blank, quote or shell
metacharacter, so URLs and shell words built from them cannot change meaning.
"""

from __future__ import annotations

import re

from mirror.errors import InvalidUpstreamDataError, printable

__all__ = [
    "DIGEST_HEX_LENGTHS",
    "ecr_host",
    "ecr_registry_region",
    "is_aws_region",
    "is_digest",
    "is_host",
    "is_repository",
    "is_tag",
    "require_digest",
    "require_reference",
    "require_repository",
    "require_tag",
]

# The distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
# distribution limits a whole name (host included) to 255 characters.
REPOSITORY_MAX_LENGTH = 255
# Registered algorithms only (OCI image spec, descriptor.md): lowercase hex of fixed length.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]+)", re.ASCII)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?", re.ASCII)


def is_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def is_repository(text: str) -> bool:
    return len(text) <= REPOSITORY_MAX_LENGTH and _REPOSITORY.fullmatch(text) is not None


def is_digest(text: str) -> bool:
    match = _DIGEST.fullmatch(text)
    return match is not None and len(match[2]) == DIGEST_HEX_LENGTHS[match[1]]


_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)


# A private ECR registry: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
_ECR_HOST = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?",
    re.ASCII,
)


def ecr_registry_region(host: str) -> str | None:
    """The Region of a private ECR registry host; None for any other host."""
    match = _ECR_HOST.fullmatch(host)
    return match["region"] if match else None


def is_aws_region(text: str) -> bool:
    """`us-east-1`, `us-gov-west-1`, `cn-north-1`: an ECR registry's Region, which also
    stands in generated shell (a `case` pattern, a default)."""
    return _AWS_REGION.fullmatch(text) is not None


def is_host(text: str) -> bool:
    """A registry host with an optional port: `quay.io`, `127.0.0.1:5000`, `[::1]:5000`."""
    return len(text) <= 253 and _HOST.fullmatch(text) is not None


def _refuse(kind: str, text: str, where: str) -> InvalidUpstreamDataError:
    shown = printable(repr(text), limit=120)
    return InvalidUpstreamDataError(
        f"{where}: invalid {kind} {shown}",
        hint="the registry sent data outside the OCI distribution grammar; nothing was "
        "written for this image",
    )


def require_tag(text: object, where: str) -> str:
    if isinstance(text, str) and is_tag(text):
        return text
    raise _refuse("tag", str(text), where)


def require_repository(text: object, where: str) -> str:
    if isinstance(text, str) and is_repository(text):
        return text
    raise _refuse("repository name", str(text), where)


def require_digest(text: object, where: str) -> str:
    if isinstance(text, str) and is_digest(text):
        return text
    raise _refuse("digest", str(text), where)


def require_reference(text: object, where: str) -> str:
    """A manifest reference: a tag or a digest."""
    if isinstance(text, str) and (is_tag(text) or is_digest(text)):
        return text
    raise _refuse("tag or digest", str(text), where)


def ecr_host(account: str, region: str) -> str:
    """The data-plane host of an account's private ECR registry in `region`."""
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account}.dkr.ecr.{region}{suffix}"
