"""Copy on miss at the boundary: what a report must be to be read at all, what the
`on_demand` policy lets through, and the key a refusal is kept under."""

from __future__ import annotations

import json
import subprocess

import pytest

from mirror.config.model import OnDemandSettings, OnDemandTags
from mirror.engine.ondemand import (
    MAX_REQUEST_BYTES,
    NOT_ALLOWED,
    TAG_NOT_ALLOWED,
    InvalidRequestError,
    judge,
    parse_request,
    refusal_tag,
)
from mirror.oci.reference import parse_reference

SENDER = "AROAEXAMPLEID:codebuild-session"
GOOD = {
    "version": 1,
    "image": "redis:7.4",
    "project": "app-ci",
    "account": "111122223333",
    "build": "app-ci:0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7",
    "time": "2026-12-07T10:00:00Z",
}


def body(**change: object) -> str:
    return json.dumps({**GOOD, **change})


def test_a_report_the_include_sends_is_read_with_its_sender_from_sqs():
    request = parse_request(body(), SENDER)

    assert str(request.image) == "docker.io/library/redis:7.4"
    assert request.written == "redis:7.4"
    assert (request.project, request.account) == ("app-ci", "111122223333")
    assert request.sender == SENDER
    # the optional fields may be empty: a build outside CodeBuild names none
    bare = parse_request(json.dumps({"version": 1, "image": "redis:7.4"}), SENDER)
    assert (bare.project, bare.account, bare.build, bare.sent) == ("", "", "", "")


@pytest.mark.parametrize(
    ("text", "sender"),
    [
        ("x" * (MAX_REQUEST_BYTES + 1), SENDER),  # too large to be a report
        (body(image="r" * 400 + ":1", project="p" * 255), SENDER),  # within keys, too long
        ("not json", SENDER),
        ("[1, 2]", SENDER),
        (body(version=2), SENDER),
        (body(admin=True), SENDER),  # a key no include sends
        (body(image=""), SENDER),
        (body(image=" redis:7.4"), SENDER),
        (body(image="Redis:7.4"), SENDER),  # not the OCI grammar
        (body(image="redis:7.4; touch /tmp/PWNED"), SENDER),
        (body(image="$(id)"), SENDER),
        (body(image=["redis:7.4"]), SENDER),
        (body(project="app ci"), SENDER),
        (body(project="-rf"), SENDER),
        (body(account="1111"), SENDER),
        (body(account="11112222333a"), SENDER),
        (body(build="x\ny"), SENDER),
        (body(time="yesterday"), SENDER),
        (body(), None),  # SQS named no sender
        (body(), "a b"),
        (body(), "x" * 200),
        (None, SENDER),
    ],
)
def test_anything_but_a_report_is_refused_without_echoing_it(text, sender):
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(text, sender)
    said = str(caught.value)
    for fragment in ("PWNED", "$(id)", "app ci", "admin", "yesterday"):
        assert fragment not in said


def settings(**fields: object) -> OnDemandSettings:
    return OnDemandSettings.model_validate(
        {"allow": ["docker.io/library/*", "quay.io/prometheus/*"], **fields}
    )


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("redis:7.4", ""),
        ("docker.io/library/python:3.13-slim", ""),
        ("quay.io/prometheus/node-exporter:v1.8.2", ""),
        ("bitnami/redis:7.4", NOT_ALLOWED),  # docker.io/bitnami: not library
        ("quay.io/other/tool:1", NOT_ALLOWED),
        ("ghcr.io/library/redis:7", NOT_ALLOWED),  # the same path, another registry
        ("index.docker.io/library/redis:7", ""),  # Docker Hub's other name is Docker Hub
    ],
)
def test_the_allow_patterns_match_registry_and_repository(image, reason):
    verdict = judge(settings(), parse_reference(image))
    assert (verdict.allowed, verdict.reason) == (reason == "", reason)


def test_the_tags_rule_limits_which_tags_a_build_may_ask_for():
    policy = settings(tags=OnDemandTags(semver=">=7"))

    assert judge(policy, parse_reference("redis:7.4")).allowed
    assert judge(policy, parse_reference("redis:6.2")).reason == TAG_NOT_ALLOWED
    assert judge(policy, parse_reference("redis:latest")).reason == TAG_NOT_ALLOWED
    # a digest names one image, not a moving tag: the rule is about tags
    assert judge(policy, parse_reference("redis@sha256:" + "a" * 64)).allowed
    slim = settings(tags=OnDemandTags(regex=r".*-slim"))
    assert judge(slim, parse_reference("python:3.13-slim")).allowed
    assert not judge(slim, parse_reference("python:3.13")).allowed


@pytest.mark.parametrize("written", ["redis:7.4", "quay.io/a/b@sha256:" + "c" * 64, "ünï"])
def test_a_refusal_is_kept_under_the_key_the_include_computes_with_sha256sum(written):
    computed = subprocess.run(
        ["sh", "-c", "printf '%s' \"$1\" | sha256sum | cut -c1-64", "sh", written],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert refusal_tag(written) == f"r-{computed}"
    assert len(refusal_tag(written)) <= 128  # a valid tag
