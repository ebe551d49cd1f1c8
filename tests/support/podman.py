"""podman as the build's image store: a runner in a private storage (the vfs driver, so no
daemon and no privileges), a `docker` stand-in on top of it for the generated include,
and a tiny base image with a shell, so a Dockerfile's RUN works. .ci/install installs
podman, skopeo and busybox-static."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# `docker` for the include: images by podman in the test's storage, a manifest's JSON
# (`docker manifest inspect`) by skopeo.
DOCKER_AS_PODMAN = """#!/bin/sh
podman() {{ command podman --root {root} --runroot {runroot} --storage-driver vfs "$@"; }}
case "$1" in
  pull) shift; podman pull --tls-verify=false "$@" ;;
  tag) shift; podman tag "$@" ;;
  login) cat >/dev/null ;;
  manifest) [ "$2" = inspect ] || exit 2; skopeo inspect --raw --tls-verify=false "docker://$3" ;;
  *) echo "unexpected docker $*" >&2; exit 2 ;;
esac
"""


@dataclass
class Podman:
    binary: str
    busybox: str
    home: Path  # a short path: podman wants its runroot under 50 characters

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, "--root", str(self.home / "root"), "--runroot",
             str(self.home / "run"), "--storage-driver", "vfs", *args],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stderr[-2000:])
        return done

    def docker_shim(self, directory: Path) -> Path:
        """`docker` in `directory` (made if missing), working on this storage."""
        directory.mkdir(exist_ok=True)
        shim = directory / "docker"
        shim.write_text(DOCKER_AS_PODMAN.format(root=self.home / "root", runroot=self.home / "run"))
        shim.chmod(0o755)
        return shim

    def build_and_push(self, context: Path, containerfile: str, destination: str) -> None:
        (context / "Containerfile").write_text(containerfile)
        self("build", "--isolation", "chroot", "-t", "localhost/seed", str(context))
        self("push", "--tls-verify=false", "localhost/seed", f"docker://{destination}")

    def push_base(self, context: Path, destination: str) -> None:
        """A tiny base with a shell (busybox on scratch), pushed to `destination`."""
        (context / "bin").mkdir(parents=True)
        shutil.copy(self.busybox, context / "bin" / "busybox")
        (context / "bin" / "sh").symlink_to("busybox")
        self.build_and_push(context, "FROM scratch\nCOPY bin /bin\n", destination)


def podman_store() -> Iterator[Podman]:
    """The `podman` fixture's body: skips where the tools are missing."""
    binary, busybox = shutil.which("podman"), shutil.which("busybox")
    if binary is None or busybox is None or shutil.which("skopeo") is None:
        pytest.skip("podman, skopeo and busybox-static are not installed (.ci/install does)")
    home = Path(tempfile.mkdtemp(prefix="mirror-pm-"))
    yield Podman(binary, busybox, home)
    shutil.rmtree(home, ignore_errors=True)
