"""Run a command; write its wall time, peak RSS (KiB) and CPU seconds (user + system) to OUT:
`python -m bench.rusage OUT -- CMD...`.

Linux keeps a process's peak RSS across exec, and a child started from a large parent
starts out sharing the parent's pages, so measuring from the benchmark process itself
would report the benchmark's own memory. This helper is small when it starts the command.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time


def installed_bytecode() -> None:
    """Compile mirror's modules to bytecode, as installing it does (pip compiles a wheel's
    modules; the Dockerfile runs compileall). The checkout is an editable install, and
    with PYTHONDONTWRITEBYTECODE set every measured process would compile mirror again,
    a cost no installed mirror pays (about 0.15 s of CPU a start here)."""
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mirror")
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"could not compile {package}")


def cpu_and_wall(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of `command`, which must succeed; for a
    benchmark process that is small itself (a large one skews the child's RSS, not its
    CPU)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    error = process.stderr.read().decode(errors="replace")  # drained: a full pipe blocks
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed: {error[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


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
