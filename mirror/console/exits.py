"""Exit codes, and the one way a failure is told: what every command shares.

Exit codes (README.md): 0 everything requested is in place; 1 some images failed (the
others were still synced); 2 the config or the command line is wrong (nothing touched).
"""

from __future__ import annotations

import sys

from mirror.errors import printable
from mirror.secrets import scrub_text

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "fail"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str) -> None:
    """`mirror: ` and the message on stderr, each of its lines on a line of its own."""
    for line in scrub_text(message).splitlines() or [""]:
        print(f"mirror: {printable(line, limit=2000)}", file=sys.stderr)
