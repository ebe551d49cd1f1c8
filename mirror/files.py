"""Writing where a failure cannot leave harm: a file a reader never sees half of, and a
stdout that a closed pipe cannot break.

`mirror sync | head -3` must finish its pass: when the reader goes away, the first write
that fails points stdout at /dev/null for the rest of the process, so nothing more is
printed and nothing raises (not the per-image lines, not a JSON log line, not the
interpreter's last flush), and the command exits with its own code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "mute_stdout", "say", "stdout_gone"]


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write beside `path`, then rename over it. A directory at `path`, a missing or
    unwritable directory, or a full disk raises OSError, and the temporary file is gone."""
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_gone = [False]


def stdout_gone() -> bool:
    return _gone[0]


def mute_stdout() -> None:
    """After a BrokenPipeError on stdout: write the rest to /dev/null."""
    _gone[0] = True
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def say(text: str = "", *, end: str = "\n") -> None:
    """print() for the CLI's own lines on stdout."""
    if _gone[0]:
        return
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except BrokenPipeError:
        mute_stdout()
