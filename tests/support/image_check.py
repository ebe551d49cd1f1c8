"""`.ci/image`'s checks of the built image, run in it with `buildah run --isolation chroot`
(the container shares the host's network, so it reaches registries this process starts on
127.0.0.1):

- `mirror --version` says the version of this checkout;
- `mirror validate` accepts config/ecs.yaml;
- `mirror daemon`, as the image's CMD runs it, copies a seeded image and answers
  `mirror health` (the image's HEALTHCHECK) inside the container, then stops on SIGTERM;
- the image runs as user 10001 with that HEALTHCHECK, `mirror` as entrypoint, `daemon` as
  command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mirror import __version__
from tests.support import skopeo
from tests.support.hub import DockerHubFront
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry, free_port

ROOT = Path(__file__).resolve().parents[2]
# crun cannot create a container here ("cgroups in hybrid mode not supported"): chroot can.
RUN = ("--isolation", "chroot")


class Buildah:
    def __init__(self, store: list[str]) -> None:
        self.store = store

    def __call__(self, *args: str, timeout: float = 120) -> str:
        ran = subprocess.run(
            ["buildah", *self.store, *args], capture_output=True, text=True, timeout=timeout
        )
        if ran.returncode != 0:
            raise SystemExit(f"buildah {' '.join(args)} failed: {ran.stderr.strip()}")
        return ran.stdout.strip()

    def run(self, container: str, *command: str, timeout: float = 60) -> str:
        return self("run", *RUN, container, "--", *command, timeout=timeout)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"image check failed: {what}")
    print(f"ok: {what}", flush=True)


def check_config(buildah: Buildah, image: str) -> None:
    inspected = json.loads(buildah("inspect", "--type", "image", image))
    config = inspected["OCIv1"]["config"]
    check(config.get("User") == "10001:10001", f"runs as 10001:10001 (User={config.get('User')})")
    check(config.get("Entrypoint") == ["mirror"], "entrypoint is mirror")
    check(config.get("Cmd") == ["daemon"], "command is daemon")
    health = (inspected["Docker"]["config"].get("Healthcheck") or {}).get("Test")
    check(health == ["CMD", "mirror", "health"], f"HEALTHCHECK is mirror health ({health})")


def check_daemon(buildah: Buildah, container: str, workdir: Path) -> None:
    with (
        LocalRegistry() as upstream,
        LocalRegistry() as target,
        DockerHubFront(upstream.url) as hub,
    ):
        seeder = Seeder(upstream.url)
        digest = seeder.push("library/nginx", "1.16", Image([random_blob(64 * 1024)]))
        seeder.close()
        port = free_port()
        config = workdir / "demo.yaml"
        config.write_text(
            "version: 1\n"
            f"target: {{kind: registry, registry_url: {target.url}}}\n"
            f"registries: {{docker.io: {{url: {hub.url}}}}}\n"
            f"daemon: {{every: 1h, health_port: {port}}}\n"
            "images: [nginx:1.16]\n"
        )
        buildah("copy", container, str(config), "/tmp/demo.yaml")
        # One shell in the image: signals to `buildah run` kill its child rather than
        # forward SIGTERM, so the daemon is started, asked and stopped from inside.
        ran = buildah.run(container, "sh", "-c", IN_IMAGE, timeout=120)
        print(ran, flush=True)
        check('"status": "ok"' in ran, "mirror health answers ok inside the image")
        check("daemon exit 0" in ran, "the daemon exits 0 on SIGTERM")
        check("pass_done events: 1" in ran, "the daemon logged pass_done as JSON")
        mirrored = skopeo.raw_digest(target.host, "mirror/docker-hub/library/nginx:1.16")
        check(mirrored == digest, "the daemon in the image copied nginx:1.16")


IN_IMAGE = """
export MIRROR_CONFIG=/tmp/demo.yaml
mirror daemon >/tmp/daemon.log 2>&1 &
pid=$!
tries=0
until mirror health >/tmp/health.json 2>&1 && grep -q '"passes": [1-9]' /tmp/health.json; do
  tries=$((tries + 1))
  if [ "$tries" -gt 120 ]; then echo "no pass within 60 s"; cat /tmp/daemon.log; exit 3; fi
  sleep 0.5
done
cat /tmp/health.json
kill -TERM "$pid"
wait "$pid"
echo "daemon exit $?"
echo "pass_done events: $(grep -c '"event": "pass_done"' /tmp/daemon.log)"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", required=True)
    parser.add_argument("store", nargs=argparse.REMAINDER, help="buildah storage options")
    args = parser.parse_args()
    buildah = Buildah([s for s in args.store if s != "--"])
    check_config(buildah, args.image)
    container = buildah("from", "--pull=never", args.image)
    try:
        version = buildah.run(container, "mirror", "--version")
        check(version == f"mirror {__version__}", f"mirror --version says {version}")
        buildah("copy", container, str(ROOT / "config/ecs.yaml"), "/tmp/ecs.yaml")
        validated = buildah.run(container, "mirror", "validate", "--config", "/tmp/ecs.yaml")
        check("/tmp/ecs.yaml: valid, 3 image entries" in validated, "validate accepts ecs.yaml")
        with tempfile.TemporaryDirectory() as workdir:
            check_daemon(buildah, container, Path(workdir))
    finally:
        buildah("rm", container)
    return 0


if __name__ == "__main__":
    sys.exit(main())
