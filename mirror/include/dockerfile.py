"""Which images a Dockerfile pulls: its `FROM` lines, the images BuildKit resolves for
`COPY --from=<image>` and `RUN --mount=...,from=<image>`, and its `# syntax=` frontend.

Follows the Dockerfile reference: parser directives only before any other line;
backslash line continuations; comments; `FROM [--platform=...] image [AS name]` in any
case; global `ARG name=default` before the first FROM substituted as `$name`, `${name}`,
`${name:-default}`; a FROM naming an earlier stage (or `scratch`) is not an image, and a
`--from` naming a stage (by name or index) is not either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BaseImage", "base_images", "parse_dockerfile"]

_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_VARIABLE_RE = re.compile(r"\$(?:\{(\w+)(?::?([-+])([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class BaseImage:
    reference: str  # as written, with ARGs substituted
    line: int
    kind: str = "from"  # "from", "copy", "run" (a --from or a mount's from=) or "syntax"
    path: str = ""


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with continuations joined and comment lines dropped: (first line, text)."""
    lines: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        lines.append((start, buffer))
    return lines


def _substitute(text: str, args: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        op, alternative = match.group(2), match.group(3) or ""
        current = args.get(name, "")
        if op == "-":
            return current or alternative
        if op == "+":
            return alternative if current else ""
        return current

    return _VARIABLE_RE.sub(value, text)


def _syntax_directive(text: str) -> BaseImage | None:
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _DIRECTIVE_RE.match(raw.strip())
        if not match:
            return None  # directives end at the first other line
        if match.group(1).lower() == "syntax":
            return BaseImage(match.group(2), number, "syntax")
    return None


def _flag_images(keyword: str, rest: str) -> list[str]:
    """`--from=X` of a COPY, the `from=X` of each `--mount=` of a RUN."""
    found = []
    for word in rest.split():
        if not word.startswith("--"):
            break  # flags come first
        name, _, value = word[2:].partition("=")
        if keyword == "COPY" and name == "from" and value:
            found.append(value)
        elif keyword == "RUN" and name == "mount":
            for field in value.split(","):
                key, _, option = field.partition("=")
                if key == "from" and option:
                    found.append(option)
    return found


def parse_dockerfile(text: str) -> list[BaseImage]:
    """The images a Dockerfile needs, in order, without stages and `scratch`."""
    found: list[BaseImage] = []
    syntax = _syntax_directive(text)
    if syntax is not None:
        found.append(syntax)
    args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    for number, line in _logical_lines(text):
        instruction, _, rest = line.partition(" ")
        keyword = instruction.upper()
        if keyword == "ARG" and not seen_from:
            for item in rest.split():
                name, sep, default = item.partition("=")
                args[name] = _substitute(default.strip("\"'"), args) if sep else args.get(name, "")
        elif keyword in ("COPY", "RUN"):
            for source in _flag_images(keyword, rest):
                image = _substitute(source, args)
                if image.lower() not in stages and not image.isdigit():
                    found.append(BaseImage(image, number, keyword.lower()))
        elif keyword == "FROM":
            seen_from = True
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            image = _substitute(words[0], args)
            is_image = image.lower() not in stages and image.lower() != "scratch"
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if is_image:
                found.append(BaseImage(image, number))
    return found


def base_images(paths: list[Path]) -> list[BaseImage]:
    return [
        dataclasses.replace(image, path=str(path))
        for path in paths
        for image in parse_dockerfile(path.read_text())
    ]
