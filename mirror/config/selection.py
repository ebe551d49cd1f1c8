"""Tag selection rules: which upstream tags an image entry means.

Versions are read leniently, the way image tags are written (`1.27`, `v1.7.0`, `3`), but a
tag with a suffix (`1.27-alpine`, `1.8.0-rc.1`) is a pre-release in semver terms and is
never picked by `semver` or `latest` alone. With `variant: alpine` the rules see only
`<version>-alpine` tags, and compare their version part as a version: the suffix is matched
exactly, so `3.13-slim-bookworm` is not a `slim` tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import semver

__all__ = ["parse_semver_range", "select_tags", "tag_version"]

_COMPARATOR_RE = re.compile(r"^(>=|<=|==|!=|>|<)?\s*v?(\d+(?:\.\d+){0,2})$")


def tag_version(tag: str) -> semver.Version | None:
    """The release version a tag names, or None when it is not a plain version."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    if not re.match(r"^\d+(\.\d+){0,2}(\+[0-9A-Za-z.-]+)?$", text):
        return None
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except ValueError:
        return None


def parse_semver_range(text: str) -> list[tuple[str, semver.Version]]:
    """`>=1.7.0 <2`, `>=1.7, <2.0`: comparators that must all hold."""
    comparators: list[tuple[str, semver.Version]] = []
    for part in re.split(r"[\s,]+", text.strip()):
        if not part:
            continue
        match = _COMPARATOR_RE.match(part)
        if not match:
            raise ValueError(
                f"invalid semver comparator {part!r}: write e.g. '>=1.7.0' or '>=1.7 <2'"
            )
        op = match.group(1) or "=="
        comparators.append(
            (op, semver.Version.parse(match.group(2), optional_minor_and_patch=True))
        )
    if not comparators:
        raise ValueError("empty semver range")
    return comparators


def _satisfies(version: semver.Version, comparators: list[tuple[str, semver.Version]]) -> bool:
    checks = {
        ">=": lambda c: c >= 0,
        "<=": lambda c: c <= 0,
        ">": lambda c: c > 0,
        "<": lambda c: c < 0,
        "==": lambda c: c == 0,
        "!=": lambda c: c != 0,
    }
    return all(checks[op](version.compare(bound)) for op, bound in comparators)


def _version_part(tag: str, variant: str | None) -> str | None:
    """The text that is compared as a version: the whole tag, or what precedes -variant."""
    if variant is None:
        return tag
    head, dash, tail = tag.partition("-")
    return head if dash and tail == variant else None


def select_tags(
    tags: Iterable[str],
    *,
    semver_range: str | None = None,
    latest: int | None = None,
    regex: str | None = None,
    variant: str | None = None,
) -> list[str]:
    """The tags that every given rule accepts; with `latest`, the N highest versions.

    The result is sorted highest version first (regex-only selections keep tag order).
    """
    chosen = [
        t
        for t in tags
        if (regex is None or re.fullmatch(regex, t)) and _version_part(t, variant) is not None
    ]
    if semver_range is None and latest is None:
        return list(dict.fromkeys(chosen))
    comparators = parse_semver_range(semver_range) if semver_range else []
    versioned: list[tuple[semver.Version, str]] = []
    for tag in set(chosen):
        part = _version_part(tag, variant)
        version = tag_version(part) if part is not None else None
        if version is not None and _satisfies(version, comparators):
            versioned.append((version, tag))
    versioned.sort(key=lambda vt: (vt[0], vt[1]), reverse=True)
    picked = [tag for _, tag in versioned]
    return picked[:latest] if latest is not None else picked
