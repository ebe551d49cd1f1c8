"""Run a command; write its wall time, peak RSS (KiB) and CPU seconds (user + system) to OUT:
`python -m bench.rusage OUT -- CMD...`.

Linux keeps a process's peak RSS across exec, and a child started from a large parent
starts out sharing the parent's pages, so measuring from the benchmark process itself
would report the benchmark's own memory. This helper is small when it starts the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def main() -> int:
    out, separator, *command = sys.argv[1:]
    assert separator == "--", "usage: python -m bench.rusage OUT -- CMD..."
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    with open(out, "w") as handle:
        handle.write(f"{elapsed} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
