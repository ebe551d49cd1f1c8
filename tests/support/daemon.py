"""A `mirror daemon` subprocess, as ECS runs it, and the waits its tests need."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["RunningDaemon", "daemon_config", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = what()
        except (httpx.HTTPError, AssertionError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RunningDaemon:
    def __init__(
        self, config: Path, port: int, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mirror", "daemon", "--config", str(config)],
            cwd=ROOT,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )

    def health(self) -> dict[str, object]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json())

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def daemon_config(write_config, target, hub, images: str, port: int, extra: str = ""):
    section = f"daemon:\n  every: 2s\n  health_address: 127.0.0.1\n  health_port: {port}\n"
    return write_config(target, images, docker_io=hub.url, extra=section + extra)
