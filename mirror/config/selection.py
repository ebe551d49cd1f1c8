"""Tag selection rules: which upstream tags an image entry means.

Versions are read leniently, the way image tags are written (`1.27`, `v1.7.0`, `3`), but a
tag with a suffix (`1.27-alpine`, `1.8.0-rc.1`) is a pre-release in semver terms and is
never picked by `semver` or `latest` alone. With `variant: alpine` the rules see only
`<version>-alpine` tags, and compare their version part as a version: the suffix is matched
exactly, so `3.13-slim-bookworm` is not a `slim` tag. Several variants are several streams,
each picked on its own.

`semver` is an npm range (semantic_version's NpmSpec): `>=20 <23`, `^20 || ^22`, `~3.12`,
`20.x`, `1.2.3 - 2.3.4`; commas between comparators mean "and", as they always did here.

`latest: N` takes the N newest versions; with `per: major` the N newest minor lines of each
major, each at its newest patch (node's "two newest minors of 20 and 22"), with `per:
minor` the N newest patches of each minor line. Under `per`, a tag that names fewer parts
than its line needs (`22`, `22.12` for `per: minor`) is a floating tag, not a release:
`floating: true` adds the floating tags of the chosen lines (`22.12-alpine`, `22-alpine`),
where the upstream has them, which is what Dockerfiles write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # imported where a range is read (~25 ms of start-up otherwise)
    import semantic_version

__all__ = ["Per", "parse_semver_range", "select_tags", "tag_version"]

Per = Literal["major", "minor"]
_VERSION_RE = re.compile(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\+[0-9A-Za-z.-]+)?$")
_PRECISION = {"major": 2, "minor": 3}  # the parts a release tag must name under `per`


@dataclass(frozen=True)
class _Release:
    tag: str
    variant: str  # "" without a variant
    version: semantic_version.Version
    precision: int  # how many of major.minor.patch the tag names


def tag_version(tag: str) -> tuple[semantic_version.Version, int] | None:
    """The release version a tag names, and how many parts it names; None when the tag
    is not a plain version."""
    match = _VERSION_RE.match(tag)
    if match is None:
        return None
    import semantic_version

    parts = [int(p) for p in match.groups() if p is not None]
    major, minor, patch = [*parts, 0, 0][:3]
    return semantic_version.Version(major=major, minor=minor, patch=patch), len(parts)


def parse_semver_range(text: str) -> semantic_version.NpmSpec:
    """An npm range; ValueError saying how to write one that is not."""
    import semantic_version

    if "!=" in text:
        raise ValueError(
            f"invalid semver range {text!r}: '!=' is not a range operator; write the "
            "ranges around the version, e.g. '<1.2.0 || >1.2.0'"
        )
    written = re.sub(r"\s*,\s*", " ", text.strip()).replace("==", "=")
    if not written:
        raise ValueError("empty semver range: write e.g. '>=1.7.0', '^20 || ^22' or '~3.12'")
    try:
        return semantic_version.NpmSpec(written)
    except ValueError:
        raise ValueError(
            f"invalid semver range {text!r}: write an npm range such as '>=1.7 <2', "
            "'^20 || ^22' (20.x and 22.x), '~3.12' (3.12.x) or '1.2.x'"
        ) from None


def _release(tag: str, variants: tuple[str, ...]) -> tuple[str, str] | None:
    """(version part, variant) of a tag the rules may consider: the whole tag without
    variants, else `<version>-<variant>` for one of them."""
    if not variants:
        return tag, ""
    head, dash, tail = tag.partition("-")
    return (head, tail) if dash and tail in variants else None


def select_tags(
    tags: Iterable[str],
    *,
    semver_range: str | None = None,
    latest: int | None = None,
    regex: str | None = None,
    variant: str | tuple[str, ...] | list[str] | None = None,
    per: Per | None = None,
    floating: bool = False,
) -> list[str]:
    """The tags every given rule accepts, each variant on its own: with `latest`, its N
    newest versions (per line with `per`), then the floating tags of the chosen lines.

    Sorted highest version first within each variant, in the order variants are given
    (regex-only selections keep the upstream's tag order)."""
    variants = (variant,) if isinstance(variant, str) else tuple(variant or ())
    listed = list(dict.fromkeys(tags))
    chosen = [
        t for t in listed if (regex is None or re.fullmatch(regex, t)) and _release(t, variants)
    ]
    if semver_range is None and latest is None:
        return chosen
    spec = parse_semver_range(semver_range) if semver_range else None
    releases: list[_Release] = []
    for tag in chosen:
        found = _release(tag, variants)
        parsed = tag_version(found[0]) if found else None
        if found is None or parsed is None:
            continue
        version, precision = parsed
        if per is not None and precision < _PRECISION[per]:
            continue  # a floating tag under `per`: it is added back by `floating`
        if spec is None or version in spec:
            releases.append(_Release(tag, found[1], version, precision))
    picked: list[str] = []
    for stream in variants or ("",):
        mine = sorted(
            (r for r in releases if r.variant == stream),
            key=lambda r: (r.version, r.precision, r.tag),
            reverse=True,
        )
        kept = _newest(mine, latest, per)
        picked += [r.tag for r in kept]
        if floating:
            picked += _floating_of(kept, set(listed))
    return list(dict.fromkeys(picked))


def _newest(releases: list[_Release], latest: int | None, per: Per | None) -> list[_Release]:
    """`releases` (newest first) cut to `latest`: overall, or per line."""
    if latest is None:
        return releases
    if per is None:
        return releases[:latest]
    if per == "major":  # each minor line at its newest patch, then N lines per major
        newest_of_minor: dict[tuple[int, int], _Release] = {}
        for release in releases:
            newest_of_minor.setdefault((release.version.major, release.version.minor), release)
        releases = list(newest_of_minor.values())
    counts: dict[tuple[int, ...], int] = {}
    kept = []
    for release in releases:
        v = release.version
        line = (v.major,) if per == "major" else (v.major, v.minor)
        counts[line] = counts.get(line, 0) + 1
        if counts[line] <= latest:
            kept.append(release)
    return kept


def _floating_of(releases: list[_Release], listed: set[str]) -> list[str]:
    """`22.12-alpine` and `22-alpine` for a chosen `22.12.1-alpine`, where they are listed
    (written the way the chosen tag is: with its `v` and its variant)."""
    found = []
    for release in releases:
        prefix = release.tag[0] if release.tag[:1] in ("v", "V") else ""
        suffix = f"-{release.variant}" if release.variant else ""
        v = release.version
        for line in (f"{v.major}.{v.minor}", f"{v.major}"):
            tag = f"{prefix}{line}{suffix}"
            if tag in listed and tag != release.tag:
                found.append(tag)
    return list(dict.fromkeys(found))
