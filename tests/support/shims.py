"""`docker`, `aws` and `sleep` stand-ins that record their exact argv, for running includes.

The docker stand-in keeps an image store as docker and podman do: `docker tag` works only
from a reference it pulled or tagged, and never to a reference with a digest.

Each call appends one JSON array to the log, so a word that an injection split, joined or
added shows up as a different argv, and nothing the include runs can hide in quoting.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

__all__ = ["Shims"]

_SHIM = """#!/usr/bin/env python3
import json, os, sys
if sys.argv[1:2] == ["login"]:
    sys.stdin.read()
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps([{name!r}, *sys.argv[1:]]) + "\\n")
if {name!r} == "aws":
    print("not-a-real-password")
# registries (comma-separated) that lack every digest
missing = [host for host in os.environ.get("SHIM_MISSING_ON", "").split(",") if host]
pulling = {name!r} == "docker" and sys.argv[1:2] == ["pull"]
asking = {name!r} == "docker" and sys.argv[1:4] == ["buildx", "imagetools", "inspect"]
if (pulling or asking) and any(sys.argv[-1].startswith(host + "/") for host in missing):
    print("manifest unknown", file=sys.stderr)
    sys.exit(1)
# Like docker and podman, the image store knows only the references pulled or tagged.
# Pulls run in parallel: one lock around each read and update of the store.
if {name!r} == "docker":
    import fcntl
    with open(os.environ["SHIM_LOG"] + ".store", "a+") as store:
        fcntl.flock(store, fcntl.LOCK_EX)
        store.seek(0)
        known = set(store.read().split())
        if pulling:
            known.add(sys.argv[-1])
        if sys.argv[1:2] == ["tag"]:
            source, name = sys.argv[2], sys.argv[3]
            if source not in known:
                print(f"Error response from daemon: No such image: {{source}}", file=sys.stderr)
                sys.exit(1)
            if "@" in name:
                print("Error parsing reference: refusing to create a tag with a digest "
                      "reference", file=sys.stderr)
                sys.exit(1)
            known.add(name)
        store.seek(0)
        store.truncate()
        store.write("\\n".join(sorted(known)))
"""


class Shims:
    def __init__(self, root: Path) -> None:
        self.bin = root / "shim-bin"
        self.bin.mkdir(exist_ok=True)
        self.log = root / "shim-calls.jsonl"
        for name in ("docker", "aws"):
            path = self.bin / name
            path.write_text(_SHIM.format(name=name))
            path.chmod(0o755)
        nap = self.bin / "sleep"  # the include's retry backoff, recorded and not waited
        nap.write_text(_SHIM.format(name="sleep"))
        nap.chmod(0o755)

    def run(
        self, shell: str, script: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `script` with `shell` (sh or bash), the shims first on PATH; `env` adds to
        the environment (AWS_REGION, SHIM_MISSING_ON=<host>[,<host>])."""
        self.log.unlink(missing_ok=True)
        Path(f"{self.log}.store").unlink(missing_ok=True)
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "SHIM_LOG": str(self.log),
            **(env or {}),
        }
        return subprocess.run(
            [shell, str(script), *args], env=env, capture_output=True, text=True, timeout=60
        )

    def build_contexts(self, snippet: Path) -> list[str]:
        """Source a `--format build-context` snippet under sh: MIRROR_BUILD_CONTEXTS, split
        into words the way `docker buildx build $MIRROR_BUILD_CONTEXTS .` splits it."""
        runner = snippet.with_suffix(".run.sh")
        runner.write_text(f'. {snippet}\nprintf "%s\\n" $MIRROR_BUILD_CONTEXTS\n')
        done = self.run("sh", runner)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]
