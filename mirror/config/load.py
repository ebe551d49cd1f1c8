"""Load the YAML config with line numbers, validate it, and fold defaults into each image.

Every error names the file, the line and the key path (`images[2].tags.semver`), so a user
can go straight to it. The rest of mirror only sees `Config` and its `ImageEntry` list.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from mirror.config.lifecycle import DEFAULT_POLICY, load_policy
from mirror.config.model import ArtifactSettings, ImageSpec, MirrorConfig, TagRule
from mirror.config.source import config_base_dir, read_config_text
from mirror.durations import parse_duration
from mirror.errors import ConfigError
from mirror.oci.reference import (
    DEFAULT_REGISTRY,
    DOCKER_HUB_ALIASES,
    Reference,
    parse_reference,
)
from mirror.oci.types import Platform, PlatformFilter

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ImageEntry",
    "check_config",
    "load_config",
    "resolve_config_source",
]

DEFAULT_CONFIG_PATH = Path("config/mirror.yaml")
_MAX_ERRORS_SHOWN = 100


@dataclass(frozen=True)
class ImageEntry:
    """One `images:` item with defaults folded in. `tags`/`rule` empty: the written tag."""

    source: Reference
    tags: tuple[str, ...] = ()
    rule: TagRule | None = None
    platforms: PlatformFilter | None = None
    line: int = 0
    immutable_tags: tuple[str, ...] = ()  # globs: once mirrored, never checked upstream again
    refresh: float | None = None  # seconds between the daemon's checks; None: every pass
    written: str = ""  # the reference as the config writes it (`nginx`, `python`)
    artifacts: ArtifactSettings | None = None  # signatures, attestations, SBOMs to copy too

    def written_as(self, tag: str | None) -> str:
        """How a user would write one of this entry's images: `python:3.12-slim`."""
        return f"{self.written}:{tag}" if tag and (self.tags or self.rule) else self.written

    def immutable(self, source: Reference) -> bool:
        """A digest never changes; a tag matching immutable_tags is trusted not to."""
        if source.digest is not None:
            return True
        tag = source.tag or ""
        return any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.immutable_tags)

    def describe(self) -> str:
        if self.rule is not None:
            written = self.rule.model_dump(exclude_defaults=True).items()
            parts = [
                f"{k} [{', '.join(v)}]" if isinstance(v, list) else f"{k} {v}" for k, v in written
            ]
            return f"{self.source.name} {{{', '.join(parts)}}}"
        if self.tags:
            return f"{self.source.name}:{{{','.join(self.tags)}}}"
        return str(self.source)


@dataclass(frozen=True)
class Config:
    source: str  # a file path, s3://BUCKET/KEY or ssm:/PARAMETER
    model: MirrorConfig
    images: tuple[ImageEntry, ...]
    lifecycle_policy: dict[str, Any] | None = None  # kind: ecr; None: leave policies alone
    # With prune enabled, mirror's own prune replaces the default's blind untagged expiry
    # on copied repositories: this is the default, to be removed where mirror put it.
    retired_lifecycle_policy: dict[str, Any] | None = None
    # Not errors, but likely mistakes: `registries:` keys that no image uses.
    warnings: tuple[str, ...] = ()


def resolve_config_source(given: str | None) -> str:
    return given or os.environ.get("MIRROR_CONFIG") or str(DEFAULT_CONFIG_PATH)


def _plain(node: Any) -> Any:
    """ruamel's round-trip types as plain Python, so strict validation sees real types."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def _locate(tree: Any, loc: tuple[int | str, ...]) -> tuple[int, str]:
    """(1-based line, dotted key path) of a pydantic error location within the YAML tree."""
    line, path, node = 1, "", tree
    for part in loc:
        if isinstance(part, str) and part.startswith("~"):
            continue  # a union branch tag, not a key
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            node = None
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return line, path or "(top level)"


def _format_errors(path: str, tree: Any, error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors()[:_MAX_ERRORS_SHOWN]:
        loc = tuple(item["loc"])
        context = item.get("ctx") or {}
        if item["type"] == "unknown_key":
            loc += (context["key"],)
        loc += tuple(context.get("path", ()))
        line, where = _locate(tree, loc)
        lines.append(f"{path}:{line}: {where}: {_in_our_words(item)}")
    if error.error_count() > _MAX_ERRORS_SHOWN:
        lines.append(f"... and {error.error_count() - _MAX_ERRORS_SHOWN} more")
    return lines


_KINDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "float_type": "a number",
}


def _written(value: Any) -> str:
    kinds = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list"}
    kind = kinds.get(type(value), "a mapping" if isinstance(value, dict) else "nothing")
    shown = f" {value!r}" if isinstance(value, str | int | float) and len(repr(value)) < 40 else ""
    return f"{kind}{shown}"


def _in_our_words(item: Any) -> str:
    """pydantic's wording ("Input should be a valid dictionary or instance of TagRule")
    turned into what to write instead."""
    kind, loc, context = item["type"], tuple(item["loc"]), item.get("ctx") or {}
    given = item.get("input")
    if kind == "missing":
        return "this key is required"
    if loc and loc[-1] == "~rule" and kind == "model_type":
        return (
            f"tags must be a list of tags such as ['1.27', '1.27-alpine'] or a rule such as "
            f"{{semver: '>=1.7', latest: 3}}, not {_written(given)}"
        )
    if loc and loc[-1] == "~all":
        platforms = "[linux/amd64, linux/arm64]"
        return f"write `all` or a list of platforms such as {platforms}, not {_written(given)}"
    if kind == "model_type":
        return f"must be a mapping (key: value lines), not {_written(given)}"
    if kind == "literal_error":
        expected = context.get("expected", "one of the documented values")
        return f"must be {expected}, not {_written(given)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(context.values()), "")
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]  # fmt: skip
        return f"must be {words} {bound}, not {_written(given)}"
    if kind == "too_short":
        return f"must have at least {context.get('min_length', 1)}, and has none"
    if kind == "too_long":
        return f"may have at most {context.get('max_length')}"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, not {_written(given)}"
    return str(item["msg"]).removeprefix("Value error, ")


def _platform_filter(value: list[str] | str | None) -> PlatformFilter | None:
    if value is None or value == "all":
        return None
    return PlatformFilter(tuple(Platform.parse(p) for p in value))


def _entries(model: MirrorConfig, tree: Any) -> tuple[ImageEntry, ...]:
    default_platforms = _platform_filter(model.defaults.platforms)
    entries = []
    for index, item in enumerate(model.images):
        line, _ = _locate(tree, ("images", index))
        common: dict[str, Any] = {
            "platforms": default_platforms,
            "line": line,
            "immutable_tags": tuple(model.defaults.immutable_tags),
            "artifacts": model.defaults.artifacts,
        }
        if isinstance(item, str):
            entries.append(ImageEntry(parse_reference(item), written=item, **common))
            continue
        spec: ImageSpec = item
        common["written"] = spec.image
        if spec.platforms is not None:
            common["platforms"] = _platform_filter(spec.platforms)
        if spec.immutable_tags is not None:
            common["immutable_tags"] = tuple(spec.immutable_tags)
        if spec.refresh is not None:
            common["refresh"] = parse_duration(spec.refresh)
        if spec.artifacts is not None:
            common["artifacts"] = spec.artifacts
        written = parse_reference(spec.image, default_tag=None)
        if isinstance(spec.tags, TagRule):
            entries.append(ImageEntry(written, rule=spec.tags, **common))
        elif spec.tags:
            entries.append(ImageEntry(written, tags=tuple(spec.tags), **common))
        else:
            entries.append(ImageEntry(parse_reference(spec.image), **common))
    return tuple(entries)


def _yaml_hint(problem: str) -> str:
    """What the parser's words usually mean in a hand-written config."""
    if "\\t" in problem or "tab" in problem:
        return "YAML indents with spaces, never tabs"
    if any(
        words in problem
        for words in ("mapping values are not allowed", "expected <block end>", "did not find")
    ):
        return (
            "check the indentation of this line and the one above: keys of one mapping line "
            "up, and a list item's keys line up after its '- '"
        )
    return "check the line and the one above it"


def load_config(source: str | Path) -> Config:
    """Read and validate a config; any problem is a ConfigError naming file, line and key
    (every problem found, one a line)."""
    config, problems = check_config(source)
    if problems:
        raise ConfigError("\n".join(problems))
    assert config is not None
    return config


def check_config(source: str | Path) -> tuple[Config | None, list[str]]:
    """The config and every problem found in it without the network, each naming file,
    line and key; the config is None when it does not fit the schema. A file that cannot
    be read, or is not YAML, is a ConfigError at once: nothing else can be checked."""
    path = str(source)
    text = read_config_text(path)
    try:
        tree = YAML(typ="rt").load(text)
    except ReaderError as exc:  # a control character YAML does not allow (a NUL, say)
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        raise ConfigError(
            f"{path}:{line}: character #x{code:04x} is not allowed in YAML",
            hint="remove it: control characters other than tab and newline cannot appear "
            "in a config",
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = str(exc.problem or exc.context)
        raise ConfigError(
            f"{path}:{line}: invalid YAML: {problem}", hint=_yaml_hint(problem)
        ) from None
    if not isinstance(tree, CommentedMap):
        raise ConfigError(f"{path}:1: the config must be a mapping with version, target, images")
    problems = _canonical_registry_keys(path, tree)
    try:
        model = MirrorConfig.model_validate(_plain(tree))
    except ValidationError as exc:
        return None, problems + _format_errors(path, tree, exc)
    policy = None
    if model.target.kind == "ecr":
        try:
            policy = load_policy(model.target.repository.lifecycle_policy, config_base_dir(path))
        except ValueError as exc:
            loc = ("target", "repository", "lifecycle_policy")
            line, where = _locate(tree, loc)
            problems.append(f"{path}:{line}: {where}: {exc}")
    retired = None
    default = model.target.kind == "ecr" and model.target.repository.lifecycle_policy == "default"
    if model.prune is not None and model.prune.enabled and default:
        policy, retired = None, DEFAULT_POLICY
    entries = _entries(model, tree)
    problems += _region_problems(path, tree, model) + _duplicates(path, entries)
    warnings = _unused_registries(path, tree, model, entries)
    return Config(path, model, entries, policy, retired, warnings), problems


def _canonical_registry_keys(path: str, tree: CommentedMap) -> list[str]:
    """A `registries:` key written `index.docker.io` or `registry-1.docker.io` is Docker
    Hub, which images name docker.io: renamed in place (its line kept), so its url and
    credentials are used; with docker.io written too, it is one registry twice."""
    registries = tree.get("registries")
    if not isinstance(registries, CommentedMap):
        return []
    problems = []
    for alias in DOCKER_HUB_ALIASES:
        if alias not in registries:
            continue
        line = registries.lc.key(alias)[0] + 1
        if DEFAULT_REGISTRY in registries:
            first = registries.lc.key(DEFAULT_REGISTRY)[0] + 1
            problems.append(
                f"{path}:{line}: registries: {alias} is Docker Hub, which line {first} "
                f"already configures as {DEFAULT_REGISTRY} (keep one entry, under "
                f"{DEFAULT_REGISTRY})"
            )
            continue
        position, where = list(registries).index(alias), registries.lc.data[alias]
        registries.insert(position, DEFAULT_REGISTRY, registries.pop(alias))
        registries.lc.data[DEFAULT_REGISTRY] = where
    return problems


def with_one_image(config: Config, image: str, tags: tuple[str, ...] = ()) -> Config:
    """`mirror copy`: the config's target, registries, credentials and defaults, with the
    one image given on the command line instead of its list."""
    try:
        spec: str | ImageSpec = ImageSpec(image=image, tags=list(tags)) if tags else image
        if isinstance(spec, str):
            parse_reference(spec)
        model = config.model.model_copy(update={"images": [spec]})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"mirror copy {image}: {problems}") from None
    entries = _entries(model, CommentedMap())  # no lines: it came from the command line
    return dataclasses.replace(config, model=model, images=entries, warnings=())


def image_key(source: Reference) -> tuple[str, str]:
    """(name, tag or digest): what says whether two references name one listed image."""
    return source.name, source.tag or source.digest or ""


def listed_images(config: Config) -> frozenset[tuple[str, str]]:
    """The `image_key` of every image the config lists by name (a tag rule's tags are
    known only once the upstream is asked, and are not among them)."""
    return frozenset(
        (entry.source.name, tag)
        for entry in config.images
        for tag in (entry.tags or (image_key(entry.source)[1],))
    )


def with_added_images(config: Config, images: list[str]) -> Config:
    """The config's list and the images builds asked for (`on_demand`) that it lacks,
    each a single tag or digest as asked: what the daemon keeps fresh. They are read
    from a table other processes write: one that is not a reference is left out."""
    listed = listed_images(config)
    extra: list[str] = []
    for image in images:
        try:
            source = parse_reference(image)
        except ConfigError:
            continue
        if image_key(source) not in listed:
            extra.append(str(source))
    if not extra:
        return config
    model = config.model.model_copy(update={"images": [*config.model.images, *extra]})
    added = _entries(model.model_copy(update={"images": extra}), CommentedMap())
    return dataclasses.replace(config, model=model, images=(*config.images, *added))


def _duplicates(path: str, entries: tuple[ImageEntry, ...]) -> list[str]:
    """The same image and tag twice would be copied twice and reported twice; most often
    it is a paste that was meant to change."""
    seen: dict[tuple[str, str], int] = {}
    problems = []
    for entry in entries:
        tags = entry.tags or (
            (entry.source.tag or entry.source.digest or "",) if not entry.rule else ()
        )
        for tag in tags:
            key = (entry.source.name, tag)
            if key in seen:
                problems.append(
                    f"{path}:{entry.line}: images: {entry.source.name}:{tag} is listed twice, "
                    f"first at line {seen[key]} (remove one of the two entries)"
                )
                continue
            seen[key] = entry.line
    return problems


def _region_problems(path: str, tree: Any, model: MirrorConfig) -> list[str]:
    """A Region that is well formed but does not exist (`us-est-1`) would fail only when
    AWS is asked; botocore's own list says so now, offline."""
    if model.target.kind != "ecr":
        return []
    wanted: list[tuple[tuple[str | int, ...], str | None]] = [
        (("target", "region"), model.target.region)
    ]
    wanted += [
        (("target", "replicate_to", i, "region"), r.region)
        for i, r in enumerate(model.target.replicate_to)
    ]
    known = _ecr_regions()
    problems = []
    for loc, region in wanted:
        if region is not None and region not in known:
            line, where = _locate(tree, loc)
            close = difflib.get_close_matches(region, known, n=1)
            suggestion = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{path}:{line}: {where}: {region} is not an AWS Region{suggestion}")
    return problems


def _ecr_regions() -> list[str]:
    import botocore.session  # only ECR targets need AWS

    session = botocore.session.get_session()
    return sorted(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ecr", partition)
    )


def _unused_registries(
    path: str, tree: Any, model: MirrorConfig, entries: tuple[ImageEntry, ...]
) -> tuple[str, ...]:
    used = {entry.source.registry for entry in entries}
    warnings = []
    for host in model.registries:
        if host in used:
            continue
        line, _ = _locate(tree, ("registries", host))
        close = difflib.get_close_matches(host, sorted(used), n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{path}:{line}: registries: no image comes from {host}{hint}")
    return tuple(warnings)
