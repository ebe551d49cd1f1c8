"""stdout that a closed pipe cannot break: `mirror sync | head -3` must finish its pass.

When the reader goes away, the first write that fails points stdout at /dev/null for the
rest of the process: nothing more is printed, nothing raises (not the per-image lines, not
a JSON log line, not the interpreter's last flush), and the command exits with its own code.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["mute_stdout", "say", "stdout_gone"]

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
