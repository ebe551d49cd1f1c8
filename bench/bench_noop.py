"""What a no-op pass costs per image: CPU of `mirror sync` when nothing changed upstream.

    .venv/bin/python -m bench.bench_noop [--images 1000] [--runs 5]

One upstream repository with N tags of one small image (the target already holds them
all), synced once to fill the target, then `--runs` no-op syncs of all N, and as many of
one image (the process's own start-up). Prints the medians (user + system CPU from wait4)
as a Markdown table: the whole process per image, and the marginal cost per image
((CPU at N - CPU at 1) / (N - 1)).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.rusage import cpu_and_wall, installed_bytecode
from tests.support.images import Image, Seeder, random_blob
from tests.support.registry import LocalRegistry

MIRROR = [sys.executable, "-m", "mirror"]


def config(path: Path, target: str, upstream: str, tags: list[str]) -> Path:
    lines = [
        "version: 1",
        "target: {kind: registry, registry_url: " + target + "}",
        "registries:",
        f"  docker.io: {{url: {upstream}}}",
        "images:",
        "  - image: many",
        f"    tags: [{', '.join(tags)}]",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    installed_bytecode()
    tags = [f"t{i}" for i in range(args.images)]
    with (
        tempfile.TemporaryDirectory() as work,
        LocalRegistry() as upstream,
        LocalRegistry() as target,
    ):
        seeder = Seeder(upstream.url)
        image = Image([random_blob(1024)])
        for blob in image.blobs():
            seeder.blob("library/many", blob)
        for tag in tags:
            seeder.manifest("library/many", tag, image.manifest, image.media_type)
        seeder.close()
        many = config(Path(work) / "many.yaml", target.url, upstream.url, tags)
        one = config(Path(work) / "one.yaml", target.url, upstream.url, tags[:1])
        sync = [*MIRROR, "sync", "--progress", "never", "--config"]
        cpu_and_wall([*sync, str(many)])  # fills the target
        at_n = [cpu_and_wall([*sync, str(many)]) for _ in range(args.runs)]
        at_1 = [cpu_and_wall([*sync, str(one)]) for _ in range(args.runs)]
    cpu_n = statistics.median(c for c, _ in at_n)
    wall_n = statistics.median(w for _, w in at_n)
    cpu_1 = statistics.median(c for c, _ in at_1)
    n = args.images
    print(f"| no-op pass, {n} images ({args.runs} runs, medians) | value |")
    print("|---|---|")
    print(f"| whole process: CPU | {cpu_n:.2f} s ({cpu_n / n * 1000:.2f} ms per image) |")
    print(f"| whole process: wall | {wall_n:.2f} s |")
    print(f"| one image: CPU (start-up and a pass of one) | {cpu_1:.2f} s |")
    print(f"| marginal CPU per image | {(cpu_n - cpu_1) / (n - 1) * 1000:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
