"""The `mirror` command's entry point. The container health check is answered before the
rest of the program is imported (mirror.service.healthcheck: standard library only, run every
30 s by ECS); every other command, and `health` with options it does not know, is
mirror.console.cli's."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from mirror.service.healthcheck import fast_health

    code = fast_health(sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    from mirror.console.cli import main as command_line

    return command_line(argv)
