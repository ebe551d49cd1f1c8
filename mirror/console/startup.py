"""What the command line keeps out of its start-up: imports of modules it never uses.

httpx imports its own command-line client on import (`httpx._main`, which loads rich,
click and pygments when installed), and structlog imports rich for pretty tracebacks
that mirror's logs do not use: together about 60 ms of CPU before any command runs.
Both are kept out by leaving the names unimportable while those libraries load; rich is
made importable again for the one thing mirror uses it for, the live display.
"""

from __future__ import annotations

import sys

__all__ = ["allow_rich", "keep_out_unused_imports"]

_KEPT_OUT = ("httpx._main", "rich")


def keep_out_unused_imports() -> None:
    """Before anything imports httpx or structlog (a None in sys.modules makes an import
    of that name raise ImportError, which both libraries expect when rich is absent)."""
    for name in _KEPT_OUT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def allow_rich() -> None:
    """Before the live display imports rich."""
    if "rich" in sys.modules and sys.modules["rich"] is None:
        del sys.modules["rich"]
