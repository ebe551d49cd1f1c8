"""mirror vs `skopeo sync --all` on the same local registries.

    .venv/bin/python -m bench.bench_sync [--runs 5] [--layer-mib 16] [--big-mib 512]
        [--concurrency 1x1,2x2,4x4,8x8]

1. cold sync: 10 images x 3 incompressible layers of 16 MiB, upstream -> a fresh target
   registry per run, mirror and skopeo alternating; medians of wall time, of the copier's
   CPU seconds (user + system) per GiB copied, and of the target registry's CPU seconds.
   With --concurrency, mirror alone once more per setting (images x blobs).
2. no-op re-sync of 100 tags through the Docker-Hub-like front: wall time and manifest
   GETs counted by the front, for both tools.
3. peak RSS of `mirror sync` copying one 512 MiB layer (wait4 rusage of that process).

Wall times include process start-up for both tools. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.rusage import installed_bytecode
from tests.support.hub import DockerHubFront
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry

# BENCH_MIRROR_SOURCE=DIR measures the mirror of another checkout (a git worktree of an
# older commit, say) with this benchmark and these registries.
_SOURCE = os.environ.get("BENCH_MIRROR_SOURCE")
MIRROR = [
    *(["env", f"PYTHONPATH={_SOURCE}"] if _SOURCE else []),
    sys.executable,
    "-m",
    "mirror",
]


def mirror_config(
    path: Path, target_url: str, upstream: str, images: list[str], concurrency: str = ""
) -> Path:
    images_in_flight, _, blobs = concurrency.partition("x")
    lines = [
        "version: 1",
        "target: {kind: registry, registry_url: " + target_url + "}",
        "registries:",
        f"  docker.io: {{url: {upstream}}}",
        *([f"concurrency: {{images: {images_in_flight}, blobs: {blobs}}}"] if concurrency else []),
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


@dataclass(frozen=True)
class Timed:
    seconds: float
    rss_kib: int
    cpu: float  # user + system of the process


def timed(command: list[str]) -> Timed:
    """One process, which must succeed, measured by bench/rusage.py."""
    with tempfile.NamedTemporaryFile("r") as out:
        helper = [sys.executable, "-m", "bench.rusage", out.name, "--", *command]
        result = subprocess.run(helper, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{command[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
        seconds, rss, cpu = out.read().split()
    return Timed(float(seconds), int(rss), float(cpu))


@dataclass
class Cold:
    """Per tool (or mirror concurrency setting): one entry per run."""

    wall: list[float] = field(default_factory=list)
    cpu_per_gib: list[float] = field(default_factory=list)
    target_cpu: list[float] = field(default_factory=list)

    def medians(self) -> tuple[float, float, float]:
        return (
            statistics.median(self.wall),
            statistics.median(self.cpu_per_gib),
            statistics.median(self.target_cpu),
        )


def skopeo_sync(config: Path, target_host: str) -> list[str]:
    return [
        "skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all",
        "--dest-tls-verify=false", str(config), f"{target_host}/skopeo",
    ]  # fmt: skip


def cold(work: Path, runs: int, layer_mib: int, settings: list[str]) -> dict[str, Cold]:
    """Tools alternate run by run, so drift on the machine hits both alike."""
    results = {name: Cold() for name in ["mirror", "skopeo", *settings]}
    with LocalRegistry() as upstream:
        seeder = Seeder(upstream.url)
        names = []
        copied = 0
        for i in range(10):
            image = Image([random_blob(layer_mib << 20) for _ in range(3)])
            copied += sum(len(b.data) for b in image.blobs())
            seeder.push(f"library/img{i}", "1", image)
            names.append(f"img{i}:1")
        seeder.close()
        gib = copied / 2**30
        skopeo_file = skopeo_config(
            work / "cold-skopeo.yml", upstream.host, {f"library/img{i}": ["1"] for i in range(10)}
        )
        for run in range(runs):
            order = ["mirror", "skopeo"] if run % 2 == 0 else ["skopeo", "mirror"]
            for name in [*order, *settings]:
                with LocalRegistry() as target:
                    if name == "skopeo":
                        command = skopeo_sync(skopeo_file, target.host)
                    else:
                        concurrency = "" if name == "mirror" else name
                        cfg = mirror_config(
                            work / "cold.yaml", target.url, upstream.url, names, concurrency
                        )
                        command = [*MIRROR, "sync", "--config", str(cfg)]
                    before = target.cpu_seconds()
                    measured = timed(command)
                    target_cpu = target.cpu_seconds() - before
                results[name].wall.append(measured.seconds)
                results[name].cpu_per_gib.append(measured.cpu / gib)
                results[name].target_cpu.append(target_cpu)
                print(
                    f"cold run {run + 1} {name}: {measured.seconds:.2f} s wall, "
                    f"{measured.cpu:.2f} s CPU ({measured.cpu / gib:.2f} s/GiB), "
                    f"target registry {target_cpu:.2f} s CPU",
                    file=sys.stderr,
                )
    return results


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
                samples.append(timed(command).seconds)
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
        measured = timed([*MIRROR, "sync", "--config", str(cfg)])
        return measured.seconds, measured.rss_kib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=16)
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument(
        "--concurrency", default="", help="mirror settings to compare, e.g. 1x1,2x2,4x4"
    )
    parser.add_argument("--cold-only", action="store_true")
    args = parser.parse_args()
    installed_bytecode()
    settings = [s for s in args.concurrency.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cold_results = cold(work, args.runs, args.layer_mib, settings)
        if not args.cold_only:
            noop_results = noop(work, args.runs)
            big_seconds, big_rss = big_layer_rss(work, args.big_mib)
    (mw, mc, mt), (sw, sc, st) = (cold_results[t].medians() for t in ("mirror", "skopeo"))
    print(f"cold: 10 images x 3 x {args.layer_mib} MiB, medians of {args.runs} alternating runs\n")
    print("| | mirror | skopeo sync --all | ratio |")
    print("|---|---|---|---|")
    print(f"| wall | {mw:.2f} s | {sw:.2f} s | {mw / sw:.2f}x |")
    print(f"| copier CPU per GiB copied | {mc:.2f} s | {sc:.2f} s | {mc / sc:.2f}x |")
    print(f"| target registry CPU | {mt:.2f} s | {st:.2f} s | {mt / st:.2f}x |")
    if settings:
        print("\n| mirror images x blobs | wall | CPU per GiB | target registry CPU |")
        print("|---|---|---|---|")
        for name in ["mirror", *settings]:
            wall, cpu, target = cold_results[name].medians()
            label = "default" if name == "mirror" else name
            print(f"| {label} | {wall:.2f} s | {cpu:.2f} s | {target:.2f} s |")
    if args.cold_only:
        return
    (mn, mg), (sn, sg) = noop_results["mirror"], noop_results["skopeo"]
    print("\n| scenario | mirror | skopeo sync --all | ratio |")
    print("|---|---|---|---|")
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
