"""Upstream pulls spent by mirror and by `skopeo sync --all` (docs/benchmarks.md records them).

    .venv/bin/python -m bench.bench_quota

Through the Docker-Hub-like front, which counts manifest GETs as Docker Hub does:
- the test set (4 single-platform images, 2 three-platform indexes) copied cold,
  re-synced with nothing changed, and re-synced after one child of one index moved;
- a rate-limited run: 3 pulls per 20 s window, 6 images; mirror's wall time against the
  theoretical minimum (windows needed - 1) x window, and what skopeo does in that case;
- the same limit with headers that overclaim by 2 (`ratelimit-remaining` says 5 where 3
  are left, as on a shared egress IP) and no Retry-After, 12 images.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_sync import mirror_config, skopeo_config, skopeo_sync
from tests.support.hub import DockerHubFront
from tests.support.images import Image, Index, Seeder, random_blob
from tests.support.registry import LocalRegistry

MIRROR = [sys.executable, "-m", "mirror"]


def three_platforms(seed_layer: int) -> list[Image]:
    return [
        Image([random_blob(seed_layer)]),
        Image([random_blob(seed_layer)], architecture="arm64", variant="v8"),
        Image([random_blob(seed_layer)], architecture="arm", variant="v7"),
    ]


def pulls(hub: DockerHubFront, command: list[str]) -> tuple[int, int, float]:
    """(manifest GETs, 429s, seconds) one command spends through the front."""
    hub.reset_counters()
    started = time.monotonic()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return hub.counters.manifest_gets, hub.counters.rejected_429, time.monotonic() - started


def test_set(work: Path) -> list[tuple[str, int, int]]:
    rows = []
    with LocalRegistry() as upstream, DockerHubFront(upstream.url) as hub:
        seeder = Seeder(upstream.url)
        refs: dict[str, list[str]] = {}
        for i in range(4):
            seeder.push(f"library/single{i}", "1", Image([random_blob(100_000)]))
            refs[f"library/single{i}"] = ["1"]
        children = {i: three_platforms(50_000) for i in range(2)}
        for i, images in children.items():
            seeder.push(f"library/multi{i}", "1", Index(images))
            refs[f"library/multi{i}"] = ["1"]
        names = [f"{repo.removeprefix('library/')}:1" for repo in refs]
        skopeo_file = skopeo_config(work / "set.yml", f"127.0.0.1:{hub.port}", refs)
        with LocalRegistry() as mirror_target, LocalRegistry() as skopeo_target:
            cfg = mirror_config(work / "set.yaml", mirror_target.url, hub.url, names)
            commands = {
                "mirror": [*MIRROR, "sync", "--config", str(cfg)],
                "skopeo": skopeo_sync(skopeo_file, skopeo_target.host),
            }
            cold = {tool: pulls(hub, command)[0] for tool, command in commands.items()}
            noop = {tool: pulls(hub, command)[0] for tool, command in commands.items()}
            children[0][1] = Image([random_blob(50_000)], architecture="arm64", variant="v8")
            seeder.push("library/multi0", "1", Index(children[0]))
            moved = {tool: pulls(hub, command)[0] for tool, command in commands.items()}
        seeder.close()
    for name, figures in (
        ("cold sync of the test set (4 images + 2 three-platform indexes)", cold),
        ("no-op re-sync", noop),
        ("one child of one index moved", moved),
    ):
        rows.append((name, figures["mirror"], figures["skopeo"]))
    return rows


def rate_limited(
    work: Path, images: int, advertised: int, enforced: int
) -> dict[str, tuple[int, int, float, int]]:
    """(GETs, 429s, seconds, images copied) per tool under `enforced` pulls per 20 s while
    the headers advertise `advertised`."""
    results = {}
    with LocalRegistry() as upstream:
        seeder = Seeder(upstream.url)
        refs = {}
        for i in range(images):
            seeder.push(f"library/img{i}", "1", Image([random_blob(50_000)]))
            refs[f"library/img{i}"] = ["1"]
        seeder.close()
        for tool in ("mirror", "skopeo"):
            with (
                DockerHubFront(upstream.url, limit=advertised, window=20) as hub,
                LocalRegistry() as tgt,
            ):
                hub.enforced_limit = enforced
                cfg = mirror_config(
                    work / "rl.yaml", tgt.url, hub.url, [f"img{i}:1" for i in range(images)]
                )
                skopeo_file = skopeo_config(work / "rl.yml", f"127.0.0.1:{hub.port}", refs)
                command = (
                    [*MIRROR, "sync", "--config", str(cfg)]
                    if tool == "mirror"
                    else skopeo_sync(skopeo_file, tgt.host)
                )
                gets, rejected, seconds = pulls(hub, command)
                copied = len(httpx.get(f"{tgt.url}/v2/_catalog").json()["repositories"] or [])
                results[tool] = (gets, rejected, seconds, copied)
    return results


def print_limited(title: str, limited: dict[str, tuple[int, int, float, int]], images: int) -> None:
    windows = -(-images // 3)
    print(f"| {title} | GETs | 429s | wall time | copied |")
    print("|---|---|---|---|---|")
    for tool, (gets, rejected, seconds, copied) in limited.items():
        print(f"| {tool} | {gets} | {rejected} | {seconds:.1f} s | {copied} of {images} |")
    minimum = (windows - 1) * 20
    print(
        f"| theoretical minimum: ({windows} windows - 1) x 20 s | {images} | 0 | "
        f"{minimum:.1f} s | {images} of {images} |"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = test_set(work)
        limited = rate_limited(work, images=6, advertised=3, enforced=3)
        overclaimed = rate_limited(work, images=12, advertised=5, enforced=3)
    print("| scenario | mirror manifest GETs | skopeo sync --all manifest GETs |")
    print("|---|---|---|")
    for name, mine, theirs in rows:
        print(f"| {name} | {mine} | {theirs} |")
    print()
    print_limited("rate-limited: 3 pulls / 20 s window, 6 images", limited, 6)
    print()
    print_limited("3 pulls / 20 s, headers claim 5, no Retry-After, 12 images", overclaimed, 12)


if __name__ == "__main__":
    main()
