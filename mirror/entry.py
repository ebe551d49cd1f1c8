"""The `mirror` command's entry point. What needs nothing of the program is answered
before the rest of it is imported: the container health check (mirror.service.healthcheck:
standard library only, run every 30 s by ECS) and `--version`. Every other command, and
`health` with options it does not know, is mirror.console.cli's."""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from mirror import __version__

        print(f"mirror {__version__}")
        return 0
    from mirror.service.healthcheck import fast_health

    code = fast_health(args)
    if code is not None:
        return code
    # pydantic looks for plugins in every installed distribution's entry points when the
    # config model is built (~70 ms in a full environment); mirror uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    from mirror.console.startup import keep_out_unused_imports

    keep_out_unused_imports()
    from mirror.console.cli import main as command_line

    return command_line(argv)
