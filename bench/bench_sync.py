"""mirror vs `skopeo sync --all` on the same local registries (issue #2's figures).

    .venv/bin/python -m bench.bench_sync [--runs 5] [--layer-mib 16] [--big-mib 512]

1. cold sync: 10 images x 3 incompressible layers of 16 MiB, upstream -> a fresh target
   registry per run, mirror and skopeo alternating; medians of wall time.
2. no-op re-sync of 100 tags through the Docker-Hub-like front: wall time and manifest
   GETs counted by the front, for both tools.
3. peak RSS of `mirror sync` copying one 512 MiB layer (wait4 rusage of that process).

Wall times include process start-up for both tools. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.hub import DockerHubFront
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry

MIRROR = [sys.executable, "-m", "mirror.cli"]


def mirror_config(path: Path, target_url: str, upstream: str, images: list[str]) -> Path:
    lines = [
        "version: 1",
        "target: {kind: registry, registry_url: " + target_url + "}",
        "registries:",
        f"  docker.io: {{url: {upstream}}}",
        "concurrency: {images: 4, blobs: 4}",
        "images:",
        *[f"  - {image}" for image in images],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def skopeo_config(path: Path, upstream_host: str, repos: dict[str, list[str]]) -> Path:
    lines = [f"{upstream_host}:", "  tls-verify: false", "  images:"]
    lines += [f"    {repo}: [{', '.join(tags)}]" for repo, tags in repos.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(command: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one process, which must succeed (see bench/rusage.py)."""
    with tempfile.NamedTemporaryFile("r") as out:
        helper = [sys.executable, "-m", "bench.rusage", out.name, "--", *command]
        result = subprocess.run(helper, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{command[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
        seconds, rss = out.read().split()
    return float(seconds), int(rss)


def skopeo_sync(config: Path, target_host: str) -> list[str]:
    return [
        "skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all",
        "--dest-tls-verify=false", str(config), f"{target_host}/skopeo",
    ]  # fmt: skip


def cold(work: Path, runs: int, layer_mib: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"mirror": [], "skopeo": []}
    with LocalRegistry() as upstream:
        seeder = Seeder(upstream.url)
        names = []
        for i in range(10):
            seeder.push(
                f"library/img{i}", "1", Image([random_blob(layer_mib << 20) for _ in range(3)])
            )
            names.append(f"img{i}:1")
        seeder.close()
        skopeo_file = skopeo_config(
            work / "cold-skopeo.yml", upstream.host, {f"library/img{i}": ["1"] for i in range(10)}
        )
        for run in range(runs):
            order = ["mirror", "skopeo"] if run % 2 == 0 else ["skopeo", "mirror"]
            for tool in order:
                with LocalRegistry() as target:
                    if tool == "mirror":
                        cfg = mirror_config(work / "cold.yaml", target.url, upstream.url, names)
                        command = [*MIRROR, "sync", "--config", str(cfg)]
                    else:
                        command = skopeo_sync(skopeo_file, target.host)
                    seconds, _ = timed(command)
                    times[tool].append(seconds)
                    print(f"cold run {run + 1} {tool}: {seconds:.2f}s", file=sys.stderr)
    return times


def noop(work: Path, runs: int) -> dict[str, tuple[float, int]]:
    results: dict[str, tuple[float, int]] = {}
    with (
        LocalRegistry() as upstream,
        LocalRegistry() as target,
        DockerHubFront(upstream.url) as hub,
    ):
        seeder = Seeder(upstream.url)
        image = Image([random_blob(1024)])
        for blob in image.blobs():
            seeder.blob("library/many", blob)
        tags = [f"t{i}" for i in range(100)]
        for tag in tags:
            seeder.manifest("library/many", tag, image.manifest, image.media_type)
        seeder.close()
        cfg = mirror_config(work / "noop.yaml", target.url, hub.url, [f"many:{t}" for t in tags])
        skopeo_file = skopeo_config(
            work / "noop-skopeo.yml", f"127.0.0.1:{hub.port}", {"library/many": tags}
        )
        for tool, command in (
            ("mirror", [*MIRROR, "sync", "--config", str(cfg)]),
            ("skopeo", skopeo_sync(skopeo_file, target.host)),
        ):
            timed(command)  # first sync fills the target
            samples, gets = [], []
            for _ in range(runs):
                hub.reset_counters()
                seconds, _ = timed(command)
                samples.append(seconds)
                gets.append(hub.counters.manifest_gets)
            results[tool] = (statistics.median(samples), max(gets))
            print(f"no-op {tool}: {results[tool]}", file=sys.stderr)
    return results


def big_layer_rss(work: Path, big_mib: int) -> tuple[float, int]:
    with LocalRegistry() as upstream, LocalRegistry() as target:
        seeder = Seeder(upstream.url)
        seeder.push("library/big", "1", Image([random_blob(big_mib << 20)]))
        seeder.close()
        cfg = mirror_config(work / "big.yaml", target.url, upstream.url, ["big:1"])
        return timed([*MIRROR, "sync", "--config", str(cfg)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=16)
    parser.add_argument("--big-mib", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cold_times = cold(work, args.runs, args.layer_mib)
        noop_results = noop(work, args.runs)
        big_seconds, big_rss = big_layer_rss(work, args.big_mib)
    m, s = (statistics.median(cold_times[t]) for t in ("mirror", "skopeo"))
    print("| scenario | mirror | skopeo sync --all | ratio |")
    print("|---|---|---|---|")
    print(
        f"| cold: 10 images x 3 x {args.layer_mib} MiB, median of {args.runs} "
        f"| {m:.2f} s | {s:.2f} s | {m / s:.2f}x |"
    )
    (mn, mg), (sn, sg) = noop_results["mirror"], noop_results["skopeo"]
    print(
        f"| no-op re-sync, 100 tags via Docker-Hub-like front, median of {args.runs} "
        f"| {mn:.2f} s, {mg} manifest GETs | {sn:.2f} s, {sg} manifest GETs | {mn / sn:.2f}x |"
    )
    print(
        f"| one {args.big_mib} MiB layer: peak RSS of mirror sync "
        f"| {big_rss / 1024:.0f} MiB ({big_seconds:.1f} s) | - | - |"
    )


if __name__ == "__main__":
    main()
