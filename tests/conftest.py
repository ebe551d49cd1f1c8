"""Fixtures: real registries on 127.0.0.1 per test, a Docker-Hub-like front, and a runner."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mirror.console.cli import main
from tests.support.daemon import RunningDaemon
from tests.support.fake_ecr import REGION, FakeEcr, fake_ecr, moto_server
from tests.support.hub import DockerHubFront
from tests.support.images import Seeder
from tests.support.podman import Podman, podman_store
from tests.support.registry import LocalRegistry


@pytest.fixture(autouse=True)
def health_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's daemons announce themselves in a file of its own, so `mirror health`
    never asks another test's daemon (or a real one on this machine)."""
    path = tmp_path / "mirror-daemon.json"
    monkeypatch.setenv("MIRROR_STATE_FILE", str(path))
    return path


@pytest.fixture
def upstream() -> Iterator[LocalRegistry]:
    """The real registry behind the Docker Hub front (and a plain upstream in its own right)."""
    with LocalRegistry() as registry:
        yield registry


@pytest.fixture
def target() -> Iterator[LocalRegistry]:
    with LocalRegistry() as registry:
        yield registry


@pytest.fixture
def hub(upstream: LocalRegistry) -> Iterator[DockerHubFront]:
    with DockerHubFront(upstream.url) as front:
        yield front


@pytest.fixture
def hub_account(hub: DockerHubFront, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`hub_account(token)`: the account ci-bot on the Docker Hub front, with its
    credentials in HUB_USER and HUB_TOKEN for a config's `username_env`/`password_env`."""

    def make(token: str) -> None:
        hub.accounts["ci-bot"] = token
        monkeypatch.setenv("HUB_USER", "ci-bot")
        monkeypatch.setenv("HUB_TOKEN", token)

    return make


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """`daemon_for(config, port, env=None)`: a `mirror daemon` subprocess, killed after
    the test."""
    started: list[RunningDaemon] = []

    def start(config: Path, port: int, env: dict[str, str] | None = None) -> RunningDaemon:
        running = RunningDaemon(config, port, tmp_path / f"daemon-{len(started)}.log", env)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


@pytest.fixture
def podman() -> Iterator[Podman]:
    """podman in a storage of the test's own (skipped where it is not installed)."""
    yield from podman_store()


@pytest.fixture
def seeder(upstream: LocalRegistry) -> Iterator[Seeder]:
    client = Seeder(upstream.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto in server mode, one per test module; `ecr` resets it for every test."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def ecr(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEcr]:
    """A fresh fake ECR (moto control plane, htpasswd registry data plane), with the AWS
    environment pointing at it."""
    with fake_ecr(moto) as fresh:
        for key, value in fresh.env().items():
            monkeypatch.setenv(key, value)
        yield fresh


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A reset moto (S3, SSM, ECS, EventBridge, SNS, SQS, ...) with the AWS environment
    pointing at it; yields its endpoint."""
    httpx.post(f"{moto}/moto-api/reset").raise_for_status()
    for key, value in {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    yield moto


@dataclass
class Run:
    code: int
    out: str
    err: str
    report: dict[str, Any]

    def image(self, source_suffix: str) -> dict[str, Any]:
        matches = [i for i in self.report["images"] if i["source"].endswith(source_suffix)]
        assert len(matches) == 1, (source_suffix, self.report["images"])
        return matches[0]


@pytest.fixture
def mirror(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in-process: `mirror("sync", config=path)` -> Run with the JSON report."""

    def run(*args: str, config: Path | str) -> Run:
        report = tmp_path / "report.json"
        report.unlink(missing_ok=True)
        wants_report = args[0] in ("sync", "plan", "copy")
        extra = ["--report", str(report)] if wants_report else []
        code = main([*args, "--config", str(config), *extra])
        captured = capsys.readouterr()
        data = json.loads(report.read_text()) if report.exists() else {}
        return Run(code, captured.out, captured.err, data)

    return run


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    """`write_config(target, images_yaml, registries=...)` -> path of a config file."""

    def write(
        target: LocalRegistry,
        images: str,
        *,
        docker_io: str | None = None,
        extra: str = "",
        name: str = "mirror.yaml",
    ) -> Path:
        registries = f"registries:\n  docker.io:\n    url: {docker_io}\n" if docker_io else ""
        text = (
            "version: 1\n"
            f"target:\n  kind: registry\n  registry_url: {target.url}\n"
            f"{registries}{textwrap.dedent(extra)}"
            f"images:\n{textwrap.indent(textwrap.dedent(images).strip(), '  ')}\n"
        )
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
