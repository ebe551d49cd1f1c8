"""A real CNCF distribution registry (Debian `docker-registry`) on 127.0.0.1, per test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.images import ACCEPT

__all__ = ["LocalRegistry", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """\
version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
  maintenance: {{uploadpurging: {{enabled: false}}}}
http: {{addr: 127.0.0.1:{port}, secret: test-only}}
{auth}
"""


class LocalRegistry:
    """Start with `with LocalRegistry() as reg:`; `reg.url` is http://127.0.0.1:PORT."""

    def __init__(
        self,
        *,
        htpasswd: tuple[str, str] | None = None,
        port: int | None = None,
        storage: Path | None = None,
    ):
        """`storage`: where blobs go (a small tmpfs, to fill), else a directory of its own."""
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._htpasswd = htpasswd
        self._dir = Path(tempfile.mkdtemp(prefix="mirror-registry-"))
        self.storage = storage or self._dir / "storage"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed: run .ci/install")
        auth = ""
        if self._htpasswd:
            user, password = self._htpasswd
            hashed = subprocess.run(
                ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
            ).stdout.strip()
            (self._dir / "htpasswd").write_text(hashed + "\n")
            auth = f"auth: {{htpasswd: {{realm: basic-realm, path: {self._dir / 'htpasswd'}}}}}"
        config = self._dir / "config.yml"
        config.write_text(_CONFIG.format(root=self.storage, port=self.port, auth=auth))
        log = open(self._dir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"registry exited: {(self._dir / 'registry.log').read_text()}")
            try:
                httpx.get(f"{self.url}/v2/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.03)
        raise RuntimeError("registry did not start within 15 s")

    def catalog(self) -> dict[str, dict[str, str]]:
        """Every repository, tag and digest: the whole state, to compare before and after."""
        state: dict[str, dict[str, str]] = {}
        with httpx.Client(base_url=self.url, timeout=30) as http:
            repositories = http.get("/v2/_catalog", params={"n": 1000}).json()["repositories"]
            for repository in repositories or []:
                tags = http.get(f"/v2/{repository}/tags/list").json().get("tags") or []
                state[repository] = {
                    tag: http.head(
                        f"/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}
                    ).headers["docker-content-digest"]
                    for tag in tags
                }
        return state

    def cpu_seconds(self) -> float:
        """User + system CPU the registry process has used so far (for benchmarks)."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Die at once, mid-request, the way a crashed or unplugged registry does."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    def upload_sessions(self) -> list[str]:
        """Upload sessions the registry still keeps open, with the data sent so far. (A
        cancelled one leaves only an empty hash state behind in distribution 2.8.)"""
        return sorted(p.parent.name for p in self.storage.rglob("_uploads/*/startedat"))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)
