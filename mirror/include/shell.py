"""The only way text becomes shell in generated includes: words are built, not pasted.

A word is literal text (quoted with `shlex.quote`), a variable expansion (always
double-quoted), or a concatenation of both; operators (`&&`, `|`, `>&2`) are the
caller's own constants. Whatever a tag or a lock file holds, it stays one inert word.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.oci.grammar import is_aws_region, is_host

__all__ = [
    "Var",
    "Word",
    "inert",
    "join",
    "require_host",
    "require_region",
    "word",
]

_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)


@dataclass(frozen=True)
class Var:
    """`"$NAME"` in a word."""

    name: str

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"not a shell variable name: {self.name!r}")


Word = str | Var | tuple[str | Var, ...]


def word(value: Word) -> str:
    """One shell word: `"${MIRROR_REGISTRY}"/'a b'` for (Var("MIRROR_REGISTRY"), "/a b")."""
    parts = value if isinstance(value, tuple) else (value,)
    rendered = [f'"${{{p.name}}}"' if isinstance(p, Var) else shlex.quote(p) for p in parts if p]
    return "".join(rendered) or "''"


def join(words: Iterable[Word]) -> str:
    """A simple command from its argv words."""
    return " ".join(word(w) for w in words)


# What may stand inside double quotes with nothing expanded but `$MIRROR_REGISTRY`.
_INERT_RE = re.compile(r"[A-Za-z0-9._:/@= -]*(\$MIRROR_REGISTRY[A-Za-z0-9._:/@= -]*)?", re.ASCII)


def inert(text: str) -> str:
    """`text` for the inside of double quotes: grammar-checked names and paths, and at most
    the one `$MIRROR_REGISTRY` expansion; anything else is refused, not quoted."""
    if not _INERT_RE.fullmatch(text):
        raise ValueError(f"not inert inside double quotes: {text!r}")
    return text


def require_host(value: str) -> str:
    """A registry host, checked: it stands in `case` arms and defaults."""
    if not is_host(value):
        raise ValueError(f"not a registry host: {value!r}")
    return value


def require_region(value: str) -> str:
    """An AWS Region, checked: it is a `case` pattern."""
    if not is_aws_region(value):
        raise ValueError(f"not an AWS Region: {value!r}")
    return value
