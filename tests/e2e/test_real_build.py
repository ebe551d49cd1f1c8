"""A real builder: does an unchanged `FROM nginx:1.16` build from the mirror?

A tiny base (busybox on scratch) and a tools image are built with podman, pushed to the
upstream registry, mirrored, and the upstream is stopped. The generated include then runs
unchanged with `docker` mapped to podman, and `podman build --pull=never` builds a
Dockerfile that names the images as it always did, with a RUN step. podman runs here with
the vfs driver and chroot isolation (no Docker engine here); .ci/install installs it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from ruamel.yaml import YAML

from tests.support import skopeo

pytestmark = pytest.mark.e2e


def test_an_unchanged_from_line_builds_from_the_mirror_with_the_upstream_gone(
    podman, upstream, target, write_config, mirror, tmp_path
):
    context = tmp_path / "base"
    podman.push_base(context, f"{upstream.host}/library/nginx:1.16")
    (context / "tool").write_text("a tool\n")
    podman.build_and_push(
        context, "FROM scratch\nCOPY tool /tool\n", f"{upstream.host}/library/tools:1"
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

    shim = podman.docker_shim(tmp_path / "shim").parent
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
