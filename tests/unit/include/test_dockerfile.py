"""FROM lines as real Dockerfiles write them."""

import subprocess

import pytest

from mirror.include.dockerfile import parse_dockerfile
from mirror.include.dockerfile_awk import DOCKERFILE_AWK


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM nginx:1.16\n", ["nginx:1.16"]),
        ("from python:3.12-slim\n", ["python:3.12-slim"]),
        ("FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n", ["golang:1.22"]),
        ("FROM --platform=linux/amd64 alpine\n", ["alpine"]),
        ("ARG TAG=1.16\nFROM nginx:${TAG}\n", ["nginx:1.16"]),
        ("ARG BASE=python\nARG V=3.12\nFROM $BASE:$V-slim\n", ["python:3.12-slim"]),
        ("ARG V\nFROM node:${V:-20}-alpine\n", ["node:20-alpine"]),
        ('ARG IMG="quay.io/x/y:1"\nFROM ${IMG}\n', ["quay.io/x/y:1"]),
        (
            "FROM golang:1.22 AS builder\nRUN go build\nFROM builder AS test\n"
            "FROM gcr.io/distroless/static\nCOPY --from=builder /x /x\n",
            ["golang:1.22", "gcr.io/distroless/static"],
        ),
        ("FROM Builder\n", ["Builder"]),  # no such stage: written as it is
        ("FROM golang AS Builder\nFROM builder\n", ["golang"]),  # stage names ignore case
        ("FROM scratch\nCOPY x /\n", []),
        ("FROM nginx@sha256:" + "a" * 64 + "\n", ["nginx@sha256:" + "a" * 64]),
        ("FROM \\\n  nginx:1.16 \\\n  AS web\n", ["nginx:1.16"]),
        ("# comment\n\n  # indented comment\nFROM nginx\n", ["nginx"]),
        ("FROM nginx:1 AS a\nARG TAG=2\nFROM nginx:$TAG\n", ["nginx:1", "nginx:"]),
        (
            "# syntax=docker/dockerfile:1.7\n# escape=\\\nFROM alpine\n",
            ["docker/dockerfile:1.7", "alpine"],
        ),
        ("FROM alpine\n# syntax=docker/dockerfile:1\n", ["alpine"]),
        # BuildKit resolves these remotely too: they need the mirror as much as FROM does.
        ("FROM alpine\nCOPY --from=nginx:1.16 /etc/nginx /etc/nginx\n", ["alpine", "nginx:1.16"]),
        (
            "FROM alpine AS a\nFROM alpine\nCOPY --from=a /x /x\nCOPY --from=0 /y /y\n",
            ["alpine", "alpine"],
        ),
        (
            "FROM alpine\nRUN --mount=type=bind,from=golang:1.22,source=/go,target=/g go\n",
            ["alpine", "golang:1.22"],
        ),
        ("FROM alpine\nRUN --mount=type=cache,target=/root/.cache pip install x\n", ["alpine"]),
        (
            "ARG GO=1.22\nFROM alpine\nCOPY --chown=1 --from=golang:${GO} /go /go\n",
            ["alpine", "golang:1.22"],
        ),
        ("FROM alpine\nRUN echo --from=nginx\n", ["alpine"]),  # not a flag of RUN
    ],
)
def test_from_lines(dockerfile, expected, tmp_path):
    assert [image.reference for image in parse_dockerfile(dockerfile)] == expected
    # The generated script's awk scanner finds the very same images (mawk and POSIX awk).
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    found = subprocess.run(
        ["awk", DOCKERFILE_AWK, str(path)], capture_output=True, text=True, check=True
    )
    assert found.stdout.splitlines() == expected


def test_line_numbers_point_at_the_instruction():
    images = parse_dockerfile("# syntax=docker/dockerfile:1\n\nFROM \\\n  nginx\n")
    assert [(i.kind, i.line) for i in images] == [("syntax", 1), ("from", 3)]
