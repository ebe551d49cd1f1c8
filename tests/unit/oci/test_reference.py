"""References are normalised the way Docker does, and land at <prefix>/<alias>/<path>."""

import pytest

from mirror.engine.naming import target_reference
from mirror.errors import BadReferenceError
from mirror.oci.reference import default_endpoint, parse_reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.16", "docker.io/library/nginx:1.16"),
        ("library/nginx:1.16", "docker.io/library/nginx:1.16"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
        ("registry-1.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("quay.io/x/y:t", "quay.io/x/y:t"),
        ("localhost/a:1", "localhost/a:1"),
        ("host:5000/a/b", "host:5000/a/b:latest"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ],
)
def test_references_normalise_like_docker(text, expected):
    assert str(parse_reference(text)) == expected


def test_a_digest_reference_keeps_its_digest_and_no_default_tag():
    digest = "sha256:" + "a" * 64
    ref = parse_reference(f"host:5000/a/b@{digest}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("host:5000", "a/b", None, digest)
    assert ref.identifier == digest


def test_tag_and_digest_together_keep_both():
    digest = "sha256:" + "b" * 64
    ref = parse_reference(f"nginx:1.16@{digest}")
    assert ref.tag == "1.16" and ref.digest == digest


@pytest.mark.parametrize(
    "text", ["", "Nginx", "nginx:", "nginx:-bad", "nginx@sha256:short", "a//b", "quay.io/"]
)
def test_invalid_references_are_rejected(text):
    with pytest.raises(BadReferenceError):
        parse_reference(text)


def test_the_endpoint_is_separate_from_the_canonical_name():
    assert default_endpoint("docker.io") == "https://registry-1.docker.io"
    assert default_endpoint("quay.io") == "https://quay.io"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("nginx:1.16", "r.example/mirror/docker-hub/library/nginx:1.16"),
        (
            "quay.io/prometheus/node-exporter:v1",
            "r.example/mirror/quay/prometheus/node-exporter:v1",
        ),
        ("ghcr.io/org/tool:1", "r.example/mirror/github/org/tool:1"),
        ("registry.k8s.io/pause:3.9", "r.example/mirror/kubernetes/pause:3.9"),
        ("public.ecr.aws/a/b:1", "r.example/mirror/ecr-public/a/b:1"),
        ("registry.gitlab.com/g/p:1", "r.example/mirror/gitlab/g/p:1"),
        ("host:5000/a/b:1", "r.example/mirror/host-5000/a/b:1"),
    ],
)
def test_target_names_follow_the_pull_through_cache_aliases(source, expected):
    assert str(target_reference(parse_reference(source), "r.example", "mirror")) == expected


def test_a_digest_pin_gets_a_pin_tag_not_the_referrers_tag_schema():
    digest = "sha256:" + "c" * 64
    target = target_reference(parse_reference(f"nginx@{digest}"), "r", "")
    assert str(target) == f"r/docker-hub/library/nginx:pin-sha256-{'c' * 64}"
