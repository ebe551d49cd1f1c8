"""Where a generated include goes: stdout, a file, `s3://bucket/key`, `ssm:/parameter`;
and merging the commands into an existing buildspec, keeping everything else in it.

A merge finds its own earlier block by the first and last commands it writes
(BEGIN_MARK/END_MARK) and replaces it, so merging twice changes nothing.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any

import structlog
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from mirror.config.source import bucket_owner
from mirror.errors import ConfigError, MirrorError, aws_hint
from mirror.files import atomic_write, say
from mirror.include.buildspec import BEGIN_MARK, END_MARK, compressed

__all__ = ["fit_for_ssm", "merge_commands", "publish"]

log = structlog.get_logger(__name__)

# The bytes a String parameter holds (AWS Systems Manager user guide, "Managing parameter
# tiers"): 4 KB in the Standard tier, 8 KB in the Advanced tier, which is charged per
# parameter and month and cannot go back to Standard. S3 objects have no such limit.
SSM_STANDARD_LIMIT = 4096
SSM_ADVANCED_LIMIT = 8192


def _write_file(path: Path, text: str) -> None:
    atomic_write(path, text, mode=0o755 if text.startswith("#!") else 0o644)


def fit_for_ssm(text: str, fmt: str | None, destination: str) -> str:
    """The value to put in Parameter Store: `text` if it fits the Standard tier, else
    its compressed form if that does (a script or snippet), else whichever fits the
    Advanced tier (logged: it is charged); a MirrorError naming the size, the limit and
    the alternative when nothing fits, before anything is written."""
    smaller = compressed(fmt, text) if fmt else None
    candidates = [v for v in (text, smaller) if v is not None]
    sizes = {v: len(v.encode()) for v in candidates}
    for limit in (SSM_STANDARD_LIMIT, SSM_ADVANCED_LIMIT):
        fitting = [v for v in candidates if sizes[v] <= limit]
        if fitting:
            value = min(fitting, key=sizes.__getitem__)
            if limit == SSM_ADVANCED_LIMIT:
                log.warning(
                    "ssm_advanced_parameter",
                    destination=destination,
                    bytes=sizes[value],
                    hint="over 4 KB the parameter is in the Advanced tier, which is charged; "
                    "publish to s3:// to avoid it",
                )
            return value
    shown = f" ({sizes[smaller]} compressed)" if smaller is not None else ""
    other = "" if fmt == "script" else "; a --format script include is compressed to fit more"
    raise MirrorError(
        f"--output {destination}: the include is {sizes[text]} bytes{shown}, more than the "
        f"{SSM_ADVANCED_LIMIT} bytes a Parameter Store value holds "
        f"({SSM_STANDARD_LIMIT} in the Standard tier); nothing was written",
        hint=f"publish it to S3 instead: --output s3://BUCKET/KEY has no size limit{other}",
    )


def publish(text: str, destination: str | None, fmt: str | None = None) -> str:
    """Write `text` (an include of format `fmt`, if it is one) to `destination`; returns
    where it went, for the user. Whatever stops the write is a MirrorError naming the
    destination, and nothing is half-written: a file is replaced atomically, S3 and
    Parameter Store take the whole value or nothing, and a value too large for
    Parameter Store is refused before the write."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _publish(text, destination, fmt)
    except OSError as exc:
        raise MirrorError(
            f"--output {destination}: {exc.strerror or exc}",
            hint="give a writable file path, s3://BUCKET/KEY or ssm:/PARAMETER",
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise MirrorError(
            f"--output {destination}: {error.get('Code', 'ClientError')}: "
            f"{error.get('Message', exc)}",
            hint="check that the bucket or parameter exists in this account and Region, and "
            "that these credentials may write it (mirror iam-policy)",
        ) from None
    except BotoCoreError as exc:
        raise MirrorError(f"--output {destination}: {exc}", hint=aws_hint(exc)) from None


def _publish(text: str, destination: str | None, fmt: str | None) -> str:
    if destination is None or destination == "-":
        say(text, end="")
        return "stdout"
    if destination.startswith("s3://"):
        import boto3

        bucket, _, key = destination.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ConfigError(f"--output {destination}: write s3://BUCKET/KEY")
        boto3.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=text.encode(),
            ContentType="text/plain",
            ExpectedBucketOwner=bucket_owner(),
        )
        return destination
    if destination.startswith("ssm:"):
        import boto3

        name = destination.removeprefix("ssm:")
        if not name.startswith("/"):
            raise ConfigError(f"--output {destination}: write ssm:/PARAMETER/NAME")
        value = fit_for_ssm(text, fmt, destination)
        # Intelligent-Tiering: Standard while the value fits it, Advanced beyond, and no
        # refusal when a parameter once Advanced gets a value Standard could hold.
        boto3.client("ssm").put_parameter(
            Name=name, Value=value, Type="String", Overwrite=True, Tier="Intelligent-Tiering"
        )
        return destination
    _write_file(Path(destination), text)
    return destination


def _without_old_block(commands: CommentedSeq) -> None:
    texts = [str(c) for c in commands]
    if BEGIN_MARK in texts and END_MARK in texts:
        start, end = texts.index(BEGIN_MARK), texts.index(END_MARK)
        if start <= end:
            del commands[start : end + 1]


_KEY_RE = re.compile(r"^( *)[^\s#-][^:]*:\s*(#.*)?$")
_CHILD_RE = re.compile(r"^( *)(- )?\S")


def _indentation(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as ruamel counts them, read off the file itself, so a
    merge rewrites no line it does not change: `key:\n    sub:` is a mapping indent of 4,
    `key:\n- item` a sequence offset of 0 (2 for `key:\n  - item`)."""
    mapping: int | None = None
    offset: int | None = None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for parent, line in itertools.pairwise(lines):
        key, child = _KEY_RE.match(parent), _CHILD_RE.match(line)
        if key is None or child is None:
            continue
        depth = len(child[1]) - len(key[1])
        if child[2] and offset is None and depth >= 0:
            offset = depth
        elif not child[2] and mapping is None and depth > 0:
            mapping = depth
    offset = 2 if offset is None else offset
    return mapping or 2, offset + 2, offset


def _expect(value: Any, kind: type, buildspec: Path, key: str, wanted: str) -> None:
    if not isinstance(value, kind):
        line = getattr(getattr(value, "lc", None), "line", None)
        where = f"{buildspec}, line {line + 1}" if line is not None else str(buildspec)
        raise ConfigError(
            f"{where}: {key} must be {wanted}, not {type(value).__name__}",
            hint="CodeBuild's buildspec reference: phases: {pre_build: {commands: [...]}}",
        )


def merge_commands(buildspec: Path, commands: list[str]) -> tuple[str, list[str]]:
    """The buildspec with `commands` first in phases.pre_build.commands (replacing an
    earlier mirror block), its comments, order, indentation and other phases kept; and
    warnings for the user. A buildspec version 0.1 is refused: each of its commands runs in
    a shell of its own, so the exported registry and the login would be lost."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        text = buildspec.read_text()
        document: Any = yaml.load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {buildspec}: {exc.strerror}") from None
    except YAMLError as exc:
        raise ConfigError(f"{buildspec} is not valid YAML: {exc}") from None
    if not isinstance(document, CommentedMap):
        raise ConfigError(f"{buildspec} is not a buildspec (a mapping with version and phases)")
    warnings = []
    version = document.get("version")
    if version is None:
        warnings.append(f"{buildspec} has no version: CodeBuild needs version: 0.2")
    elif str(version) != "0.2":
        raise ConfigError(
            f"{buildspec}: version {version} is not supported",
            hint="in version 0.1 every command runs in its own shell, so MIRROR_REGISTRY and "
            "the login would be lost between commands; use version: 0.2",
        )
    mapping, sequence, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    phases = document.setdefault("phases", CommentedMap())
    _expect(phases, CommentedMap, buildspec, "phases", "a mapping of phase names")
    pre_build = phases.get("pre_build")
    if pre_build is None:
        pre_build = CommentedMap()
        phases.insert(0, "pre_build", pre_build)
    _expect(pre_build, CommentedMap, buildspec, "phases.pre_build", "a mapping with commands:")
    existing = pre_build.get("commands")
    if existing is None:
        existing = CommentedSeq()
        pre_build["commands"] = existing
    _expect(existing, CommentedSeq, buildspec, "phases.pre_build.commands", "a list of commands")
    _without_old_block(existing)
    for offset, command in enumerate(commands):
        existing.insert(offset, command)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue(), warnings
