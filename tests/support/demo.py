"""`bash .ci/demo`: mirror end to end on this machine, with nothing from the internet.

Starts the registries config/demo.yaml names, seeds a few small sample images upstream,
runs `mirror validate`, `mirror sync` twice (the second is a no-op that spends no pull),
and checks every target digest with skopeo. With `--keep` the registries stay up after
the checks, to explore with mirror's other commands, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from tests.support import skopeo
from tests.support.hub import DockerHubFront
from tests.support.images import Image, Index, Seeder, random_blob
from tests.support.registry import LocalRegistry

CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
HUB_PORT, TARGET_PORT, QUAY_PORT = 5001, 5002, 5003


def seed(hub_backend: str, quay: str) -> dict[str, str]:
    """Push the sample images; returns upstream digest by target reference."""
    base = random_blob(256 * 1024)
    expected: dict[str, str] = {}
    with_hub = Seeder(hub_backend)
    expected["docker-hub/library/nginx:1.16"] = with_hub.push(
        "library/nginx", "1.16", Image([base, random_blob(512 * 1024)])
    )
    for tag in ("3.12-slim", "3.13-slim"):
        index = Index(
            [
                Image([base, random_blob(128 * 1024)]),
                Image([random_blob(128 * 1024)], architecture="arm64", variant="v8"),
            ]
        )
        expected[f"docker-hub/library/python:{tag}"] = with_hub.push("library/python", tag, index)
    alpine = Index(
        [
            Image([random_blob(64 * 1024)], oci=True),
            Image([random_blob(64 * 1024)], architecture="arm64", oci=True),
        ],
        oci=True,
        attestations=True,
    )
    with_hub.push("library/alpine", "3.20", alpine)
    with_hub.close()
    with_quay = Seeder(quay)
    for tag in ("v1.6.0", "v1.7.0", "v1.8.1", "v1.8.2", "v1.9.0-rc.0"):
        digest = with_quay.push("prometheus/node-exporter", tag, Image([random_blob(32 * 1024)]))
        if tag in ("v1.8.1", "v1.8.2"):
            expected[f"quay/prometheus/node-exporter:{tag}"] = digest
    with_quay.close()
    return expected


def mirror(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mirror", *args, "--config", str(CONFIG)]
    print(f"\n$ mirror {' '.join(args)} --config config/demo.yaml", flush=True)
    result = subprocess.run(command, text=True, capture_output=True)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result


EXPLORE = """
The registries keep running until Ctrl-C (127.0.0.1:5001 is Docker Hub, :5003 Quay,
:5002 the target). Try, in another terminal:
  .venv/bin/mirror plan --config config/demo.yaml
  .venv/bin/mirror validate --resolve --config config/demo.yaml
  .venv/bin/mirror copy --config config/demo.yaml python:3.13-slim
  .venv/bin/mirror buildspec --format script --config config/demo.yaml
  skopeo inspect --tls-verify=false docker://127.0.0.1:5002/mirror/docker-hub/library/nginx:1.16
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bash .ci/demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the registries running after the checks"
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        try:
            backend = stack.enter_context(LocalRegistry())
            quay = stack.enter_context(LocalRegistry(port=QUAY_PORT))
            target = stack.enter_context(LocalRegistry(port=TARGET_PORT))
            hub = stack.enter_context(DockerHubFront(backend.url, port=HUB_PORT, limit=100))
        except (OSError, RuntimeError) as exc:
            print(f"demo: cannot start the local registries: {exc}", file=sys.stderr)
            print("demo: ports 5001-5003 must be free on 127.0.0.1", file=sys.stderr)
            return 1
        expected = seed(backend.url, quay.url)
        print(f"seeded {len(expected) + 1} images upstream")
        if mirror("validate").returncode != 0:
            return 1
        report = Path(tempfile.mkdtemp()) / "report.json"
        if mirror("sync", "--report", str(report)).returncode != 0:
            return 1
        pulls_first = hub.counters.manifest_gets
        hub.reset_counters()
        if mirror("sync").returncode != 0:
            return 1
        print(
            f"\nDocker Hub pulls spent: {pulls_first} on the first sync, "
            f"{hub.counters.manifest_gets} on the re-sync"
        )
        print("\nchecked with skopeo (target digest == upstream digest):")
        ok = True
        for reference, digest in expected.items():
            got = skopeo.raw_digest(target.host, f"mirror/{reference}")
            ok &= got == digest
            print(f"  {'ok  ' if got == digest else 'DIFF'} mirror/{reference}  {got[:19]}")
        summary = json.loads(report.read_text())["summary"]
        print(f"\nreport: {summary}")
        if not ok or hub.counters.manifest_gets != 0:
            print("demo: FAILED", file=sys.stderr)
            return 1
        print("\ndemo: OK")
        if args.keep:
            print(EXPLORE, flush=True)
            _wait_for_a_signal()
        return 0


def _wait_for_a_signal() -> None:
    """Block until Ctrl-C or SIGTERM; the registries stop as the `with` ends."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        print("demo: stopping the registries")


if __name__ == "__main__":
    sys.exit(main())
