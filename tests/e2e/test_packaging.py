"""The image as it is built: hadolint on the Dockerfile, and the wheel installed into a
clean venv (what the Dockerfile's build stage does) running `mirror` as the image runs it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mirror import __version__
from tests.support.images import Image, random_blob
from tests.support.registry import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".wheelhouse"
BIN = Path(sys.executable).parent


def test_the_dockerfile_is_hadolint_clean():
    checked = subprocess.run(
        [BIN / "hadolint", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dockerfile_runs_the_daemon_as_a_non_root_user_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage, both from the build ARG
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and 'CMD ["mirror", "health"]' in text
    assert 'ENTRYPOINT ["mirror"]' in text and 'CMD ["daemon"]' in text


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv holding only the built wheel and its declared dependencies."""
    assert WHEELHOUSE.is_dir(), "run `bash .ci/install` first: it fills .wheelhouse"
    work = tmp_path_factory.mktemp("wheel")
    offline = ["--no-index", "--find-links", str(WHEELHOUSE), "--disable-pip-version-check"]
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", *offline, "-w", work / "dist", ROOT], check=True)
    (wheel,) = (work / "dist").glob("mirror-*.whl")
    subprocess.run([sys.executable, "-m", "venv", work / "venv"], check=True)
    venv_pip = [work / "venv/bin/python", "-m", "pip", "-q"]
    subprocess.run([*venv_pip, "install", *offline, wheel], check=True)
    return work / "venv/bin/mirror"


def run_installed(mirror: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [mirror, *args], cwd="/tmp", capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip


def test_the_installed_wheel_reports_its_version(installed):
    ran = run_installed(installed, "--version")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"mirror {__version__}"


def test_health_fails_when_no_daemon_answers(installed):
    ran = run_installed(installed, "health", "--port", str(free_port()))

    assert ran.returncode == 1
    assert "no daemon answering" in ran.stdout


def test_the_installed_daemon_passes_its_own_health_check(
    installed, hub, target, seeder, write_config
):
    seeder.push("library/nginx", "1.16", Image([random_blob(100)]))
    port = free_port()
    daemon_section = f"daemon:\n  health_address: 127.0.0.1\n  health_port: {port}\n"
    config = write_config(target, "- nginx:1.16", docker_io=hub.url, extra=daemon_section)
    env = {"MIRROR_CONFIG": str(config)}  # as the image sets it; no --config, no --port
    process = subprocess.Popen(
        [installed, "daemon"], cwd="/tmp", env={"PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").json()["passes"] >= 1:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ran = run_installed(installed, "health", env=env)
        assert ran.returncode == 0, ran.stdout
        assert '"status": "ok"' in ran.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert '"event": "pass_done"' in output
