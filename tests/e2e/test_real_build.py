"""A real builder: does an unchanged `FROM nginx:1.16` build from the mirror?

A tiny base (busybox on scratch) and a tools image are built with podman, pushed to the
upstream registry, mirrored, and the upstream is stopped. The generated include then runs
unchanged with `docker` mapped to podman, and `podman build --pull=never` builds a
Dockerfile that names the images as it always did, with a RUN step. podman runs here with
the vfs driver and chroot isolation (no Docker engine here); .ci/install installs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support import skopeo

pytestmark = pytest.mark.e2e

DOCKER_AS_PODMAN = """#!/bin/sh
# `docker` for the include, done by podman in the test's own storage.
podman() {{ command podman --root {root} --runroot {runroot} --storage-driver vfs "$@"; }}
case "$1" in
  pull) shift; podman pull --tls-verify=false "$@" ;;
  tag) shift; podman tag "$@" ;;
  login) cat >/dev/null ;;
  *) echo "unexpected docker $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def podman():
    binary, busybox = shutil.which("podman"), shutil.which("busybox")
    if binary is None or busybox is None:
        pytest.skip("podman and busybox-static are not installed (.ci/install installs them)")
    home = Path(tempfile.mkdtemp(prefix="mirror-pm-"))  # podman wants a runroot under 50 chars
    storage = ["--root", str(home / "root"), "--runroot", str(home / "run")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [binary, *storage, "--storage-driver", "vfs", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (args, done.stderr[-2000:])
        return done

    run.storage = storage  # type: ignore[attr-defined]
    run.busybox = busybox  # type: ignore[attr-defined]
    yield run
    shutil.rmtree(home, ignore_errors=True)


def build_and_push(podman, context: Path, containerfile: str, destination: str) -> None:
    (context / "Containerfile").write_text(containerfile)
    podman("build", "--isolation", "chroot", "-t", "localhost/seed", str(context))
    podman("push", "--tls-verify=false", "localhost/seed", f"docker://{destination}")


def test_an_unchanged_from_line_builds_from_the_mirror_with_the_upstream_gone(
    podman, upstream, target, write_config, mirror, tmp_path
):
    context = tmp_path / "base"
    (context / "bin").mkdir(parents=True)
    shutil.copy(podman.busybox, context / "bin" / "busybox")
    (context / "bin" / "sh").symlink_to("busybox")
    build_and_push(
        podman, context, "FROM scratch\nCOPY bin /bin\n", f"{upstream.host}/library/nginx:1.16"
    )
    (context / "tool").write_text("a tool\n")
    build_and_push(
        podman, context, "FROM scratch\nCOPY tool /tool\n", f"{upstream.host}/library/tools:1"
    )
    config = write_config(target, "- nginx:1.16\n- tools:1", docker_io=upstream.url)
    assert mirror("sync", config=config).code == 0
    mirrored = skopeo.raw_digest(target.host, "mirror/docker-hub/library/nginx:1.16")
    script, fragment = tmp_path / "pull.sh", tmp_path / "fragment.sh"
    assert (
        mirror("buildspec", "--format", "script", "--output", str(script), config=config).code == 0
    )
    commands = YAML(typ="safe").load(mirror("buildspec", config=config).out)
    fragment.write_text("set -e\n" + "\n".join(commands["phases"]["pre_build"]["commands"]) + "\n")
    upstream.stop()  # from here on, only the mirror can serve the images

    shim = tmp_path / "shim"
    shim.mkdir()
    root, runroot = podman.storage[1], podman.storage[3]
    (shim / "docker").write_text(DOCKER_AS_PODMAN.format(root=root, runroot=runroot))
    (shim / "docker").chmod(0o755)
    # Short names, as Docker users write them, and fully qualified ones, which podman and
    # buildah look up as written (they do not normalise short names as Docker does).
    apps = {}
    for kind, prefix in (("short", ""), ("qualified", "docker.io/library/")):
        app = apps[kind] = tmp_path / f"app-{kind}"
        app.mkdir()
        (app / "Dockerfile").write_text(
            f"FROM {prefix}nginx:1.16 AS base\nCOPY --from={prefix}tools:1 /tool /tool\n"
            "RUN test -f /tool && echo built > /built\n"
        )
    env = {"PATH": f"{shim}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    for include, args, app in (
        (script, [str(apps["qualified"] / "Dockerfile")], apps["qualified"]),
        (fragment, [], apps["short"]),
        (fragment, [], apps["qualified"]),
    ):
        podman("rmi", "--all", "--force")
        pulled = subprocess.run(
            ["sh", str(include), *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert pulled.returncode == 0, pulled.stderr

        podman("build", "--isolation", "chroot", "--pull=never", "-t", "localhost/app", str(app))

        base = json.loads(podman("image", "inspect", "nginx:1.16").stdout)[0]
        assert base["Digest"] == mirrored  # the base is the mirrored image
        built = json.loads(podman("image", "inspect", "localhost/app").stdout)[0]
        assert built["RootFS"]["Layers"][0] == base["RootFS"]["Layers"][0]
        assert len(built["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 2  # COPY, RUN
