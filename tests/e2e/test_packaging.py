"""The release as users get it: the sdist and wheel `python -m build` makes (offline), clean
for `twine check`, the wheel installed into a clean venv running every subcommand and the
daemon as the image runs it; hadolint on the Dockerfile, and its lock. `.ci/image` builds
and starts the image itself."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` as the release procedure runs it, without network (no isolation:
    the build backend comes from the test environment)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out,
         ROOT],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv holding only the built wheel and its declared dependencies."""
    assert WHEELHOUSE.is_dir(), "run `bash .ci/install` first: it fills .wheelhouse"
    work = tmp_path_factory.mktemp("venv")
    offline = ["--no-index", "--find-links", str(WHEELHOUSE), "--disable-pip-version-check"]
    (wheel,) = dist.glob("base_image_mirror-*.whl")
    subprocess.run([sys.executable, "-m", "venv", work], check=True)
    subprocess.run([work / "bin/python", "-m", "pip", "-q", "install", *offline, wheel], check=True)
    return work / "bin/mirror"


def test_the_release_artifacts_are_named_versioned_licensed_and_pass_twine_check(dist):
    names = sorted(p.name for p in dist.iterdir())
    assert names == [
        f"base_image_mirror-{__version__}-py3-none-any.whl",
        f"base_image_mirror-{__version__}.tar.gz",
    ]
    checked = subprocess.run(
        [BIN / "twine", "check", "--strict", *dist.iterdir()], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"base_image_mirror-{__version__}.dist-info/METADATA").decode()
        files = archive.namelist()
    assert "License-Expression: Apache-2.0" in metadata
    assert f"base_image_mirror-{__version__}.dist-info/licenses/LICENSE" in files
    assert f"base_image_mirror-{__version__}.dist-info/licenses/NOTICE" in files
    assert not [f for f in files if f.startswith("tests/")]
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"LICENSE", "NOTICE", "README.md", "pyproject.toml", "mirror/console/cli.py"} <= members


def test_every_subcommand_of_the_installed_wheel_has_help(installed):
    commands = sorted(_subcommands())
    assert "sync" in commands and "daemon" in commands
    for command in commands:
        ran = run_installed(installed, command, "--help")
        assert ran.returncode == 0, (command, ran.stderr)
        assert ran.stdout.startswith("usage: mirror"), (command, ran.stdout)


def _subcommands() -> list[str]:
    from mirror.console.cli import _parser

    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(commands.choices)


def test_the_lock_pins_every_dependency_with_hashes():
    """requirements.lock, what the Dockerfile installs with --require-hashes, must hold a
    version each dependency in pyproject.toml accepts, every pin with its hashes: a
    dependency added without `bash .ci/lock` fails here, not in an image build."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "requirements.lock").read_text()
    pins = {
        canonicalize_name(m["name"]): (Version(m["version"]), m["rest"])
        for m in re.finditer(
            r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\S+)(?P<rest>(?: \\\n\s+--hash=\S+)*)",
            text,
            re.M,
        )
    }
    assert pins, "no pins found"
    for name, (_, hashes) in pins.items():
        assert "--hash=sha256:" in hashes, f"{name} has no hash"
    for requirement in [*map(Requirement, project["dependencies"]), Requirement("setuptools>=77")]:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run bash .ci/lock"
        assert requirement.specifier.contains(pins[name][0]), (name, pins[name][0])


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
    env = {  # as the image sets it; no --config, no --port
        "MIRROR_CONFIG": str(config),
        "MIRROR_STATE_FILE": os.environ["MIRROR_STATE_FILE"],
    }
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
