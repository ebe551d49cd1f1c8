"""How many bytes the CodeBuild include takes, per format and image count, plain and in
the compressed form that `--output ssm:/...` uses when the plain one is over 4 KB.

    .venv/bin/python -m bench.bench_include_size

Images are rendered for config/ecs.yaml's target (ECR, no replicas) with distinct
digests, so the figures hold the incompressible part a real include has.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from mirror.config import load_config
from mirror.include.buildspec import Pull, compressed, render
from mirror.include.publish import SSM_ADVANCED_LIMIT, SSM_STANDARD_LIMIT
from mirror.oci.reference import parse_reference

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def pulls(count: int) -> list[Pull]:
    return [
        Pull(
            parse_reference(f"library/image{i}:1.{i}"),
            f"mirror/docker-hub/library/image{i}@sha256:"
            + hashlib.sha256(str(i).encode()).hexdigest(),
            (f"image{i}:1.{i}",),
        )
        for i in range(count)
    ]


def where(size: int) -> str:
    if size <= SSM_STANDARD_LIMIT:
        return "SSM Standard"
    return "SSM Advanced" if size <= SSM_ADVANCED_LIMIT else "S3 only"


def main() -> int:
    config = load_config(ROOT / "config" / "ecs.yaml")
    print("| images | script | script, compressed | buildspec fragment |")
    print("|---|---|---|---|")
    for count in (1, 8, 9, 20, 50, 60):
        chosen = pulls(count)
        script = render("script", config, REGISTRY, chosen).encode()
        packed = (compressed("script", script.decode()) or "").encode()
        fragment = render("buildspec", config, REGISTRY, chosen).encode()
        cells = [f"{len(b):,} B ({where(len(b))})" for b in (script, packed, fragment)]
        print(f"| {count} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
