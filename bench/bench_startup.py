"""What a command costs before it does anything: CPU and wall time of whole processes.

    .venv/bin/python -m bench.bench_startup [--runs 20]

- `mirror health` against a running `mirror daemon` (the ECS container health check, run
  every 30 s in the task), through the installed `mirror` command as ECS runs it, beside
  the full command line (`python -m mirror.console.cli health --port P`) that answered it before;
- `mirror --version`;
- `mirror validate` of a 100-image config.

Each figure is the median of `--runs` runs (user + system CPU of the process, from
wait4, and wall time). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.rusage import cpu_and_wall, installed_bytecode
from tests.support.registry import LocalRegistry, free_port

ROOT = Path(__file__).resolve().parents[1]
MIRROR = str(Path(sys.executable).with_name("mirror"))


def medians(command: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    cpu_and_wall(command, env)  # warm the page cache
    figures = [cpu_and_wall(command, env) for _ in range(runs)]
    return statistics.median(f[0] for f in figures), statistics.median(f[1] for f in figures)


def config(path: Path, target_url: str, images: int, port: int) -> Path:
    lines = [
        "version: 1",
        "target: {kind: registry, registry_url: " + target_url + "}",
        f"daemon: {{every: 6h, health_port: {port}}}",
        "images:",
        *[f"  - example/image{i}:1.{i}" for i in range(images)],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    installed_bytecode()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as work, LocalRegistry() as target:
        state = Path(work) / "daemon.json"
        env = {**os.environ, "MIRROR_STATE_FILE": str(state)}
        port = free_port()
        big = config(Path(work) / "hundred.yaml", target.url, 100, port)
        small = config(Path(work) / "one.yaml", target.url, 1, port)
        daemon = subprocess.Popen(
            [MIRROR, "daemon", "--config", str(small)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not state.exists() or httpx.get(f"http://127.0.0.1:{port}/healthz").is_error:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.2)
            commands = [
                ("`mirror health` (the container health check)", [MIRROR, "health"]),
                (
                    "`python -m mirror.console.cli health --port P` (the full command line)",
                    [sys.executable, "-m", "mirror.console.cli", "health", "--port", str(port)],
                ),
                ("`mirror --version`", [MIRROR, "--version"]),
                ("`mirror validate` of 100 images", [MIRROR, "validate", "--config", str(big)]),
            ]
            for label, command in commands:
                cpu, wall = medians(command, env, args.runs)
                rows.append((label, cpu, wall))
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    print(f"| command ({args.runs} runs, medians) | CPU s | wall s |")
    print("|---|---|---|")
    for label, cpu, wall in rows:
        print(f"| {label} | {cpu:.3f} | {wall:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
