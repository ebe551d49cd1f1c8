"""Registry client edge cases: pagination, error bodies, odd statuses, retries, limits."""

import gzip
import hashlib
import json

import httpx
import pytest
from pytest_httpx import IteratorStream

from mirror.errors import (
    AuthError,
    HeadUnsupportedError,
    IntegrityError,
    InvalidUpstreamDataError,
    NotFoundError,
    RegistryError,
    ServerError,
    TooManyRequestsError,
)
from mirror.oci.client import RegistryClient
from mirror.oci.retry import RetryPolicy
from mirror.oci.types import OCI_INDEX, sha256_digest

BASE = "https://r.test"
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)


@pytest.fixture
def registry():
    with httpx.Client() as http:
        yield RegistryClient(http, BASE, name="r.test", retry=FAST)


def test_tag_listing_follows_relative_and_absolute_link_headers(httpx_mock, registry):
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/tags/list?n=1000",
        json={"tags": ["1", "2"]},
        headers={"Link": '</v2/a/tags/list?last=2&n=1000>; rel="next"'},
    )
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/tags/list?last=2&n=1000",
        json={"tags": ["3"]},
        headers={"Link": f'<{BASE}/v2/a/tags/list?last=3&n=1000>; rel="next"'},
    )
    httpx_mock.add_response(url=f"{BASE}/v2/a/tags/list?last=3&n=1000", json={"tags": None})
    assert registry.list_tags("a").tags == ["1", "2", "3"]


def test_a_link_loop_does_not_spin_forever(httpx_mock, registry):
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/tags/list?n=1000",
        json={"tags": ["1"]},
        headers={"Link": '</v2/a/tags/list?n=1000>; rel="next"'},
    )
    assert registry.list_tags("a").tags == ["1"]


def test_registry_error_bodies_become_typed_errors_with_the_registry_code(httpx_mock, registry):
    httpx_mock.add_response(
        status_code=404,
        json={"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]},
    )
    with pytest.raises(NotFoundError) as caught:
        registry.list_tags("a")
    assert caught.value.code == "NAME_UNKNOWN"
    assert "repository name not known" in caught.value.message


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, b"", AuthError, "UNAUTHORIZED"),
        (403, b"<html>denied</html>", AuthError, "DENIED"),
        (418, b"{not json", RegistryError, "HTTP_418"),
        (400, b'{"errors": "not-a-list"}', RegistryError, "HTTP_400"),
    ],
)
def test_odd_statuses_and_malformed_bodies_still_give_a_clear_error(
    httpx_mock, registry, status, body, kind, code
):
    httpx_mock.add_response(status_code=status, content=body)
    with pytest.raises(kind) as caught:
        registry.get_manifest("a", "1")
    assert caught.value.code == code and caught.value.status == status


def test_server_errors_are_retried_then_succeed(httpx_mock, registry):
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    httpx_mock.add_response(status_code=503)
    httpx_mock.add_response(status_code=502)
    httpx_mock.add_response(content=body, headers={"Content-Type": "application/json"})
    assert registry.get_manifest("a", "1").digest == sha256_digest(body)


def test_server_errors_give_up_after_the_attempts(httpx_mock, registry):
    httpx_mock.add_response(status_code=500, is_reusable=True)
    with pytest.raises(ServerError):
        registry.head_manifest("a", "1")
    assert len(httpx_mock.get_requests()) == 3


def test_a_throttle_waits_for_retry_after(httpx_mock, registry, monkeypatch):
    httpx_mock.add_response(status_code=429, headers={"Retry-After": "0.2"})
    httpx_mock.add_response(headers={"Docker-Content-Digest": "sha256:" + "a" * 64})
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)
    assert registry.head_manifest("a", "1") is not None
    assert slept and slept[0] >= 0.2


def test_a_plain_429_is_a_throttle_error(httpx_mock):
    httpx_mock.add_response(status_code=429, is_reusable=True)
    with httpx.Client() as http:
        once = RegistryClient(http, BASE, name="r", retry=RetryPolicy(attempts=1))
        with pytest.raises(TooManyRequestsError) as caught:
            once.head_manifest("a", "1")
    assert caught.value.code == "TOOMANYREQUESTS_PLAIN"


def test_head_of_a_missing_manifest_is_none(httpx_mock, registry):
    # distribution (and Docker Hub) answer a HEAD with the error's JSON type, no body
    httpx_mock.add_response(
        method="HEAD", status_code=404, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert registry.head_manifest("a", "1") is None


@pytest.mark.parametrize(
    ("status", "content_type"),
    [(405, "application/json"), (501, ""), (404, "text/html"), (404, "")],
)
def test_a_head_that_proves_nothing_is_confirmed_by_a_get(
    httpx_mock, registry, status, content_type
):
    # Nexus answers HEAD with an HTML 404, others 405 (distribution#1485); ggcr's
    # remote.Head falls back to GET the same way.
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    httpx_mock.add_response(method="HEAD", status_code=status, headers=headers)
    httpx_mock.add_response(method="GET", content=body, headers={"Content-Type": OCI_INDEX})
    found = registry.head_manifest("a", "1")
    assert found is not None and found.digest == sha256_digest(body)
    assert found.media_type == OCI_INDEX and found.size == len(body)


def test_a_head_that_proves_nothing_and_a_get_that_finds_nothing_is_none(httpx_mock, registry):
    httpx_mock.add_response(method="HEAD", status_code=404, headers={"Content-Type": "text/html"})
    httpx_mock.add_response(method="GET", status_code=404, json={"errors": []})
    assert registry.head_manifest("a", "1") is None


def test_an_upstream_client_leaves_the_paid_get_to_its_caller(httpx_mock):
    httpx_mock.add_response(method="HEAD", status_code=405)
    with httpx.Client() as http:
        upstream = RegistryClient(http, BASE, name="r.test", retry=FAST, confirm_heads=False)
        with pytest.raises(HeadUnsupportedError, match="HEAD answered 405"):
            upstream.head_manifest("a", "1")
    assert [r.method for r in httpx_mock.get_requests()] == ["HEAD"]


def test_a_link_that_drops_the_repository_key_stays_in_the_listed_repository(httpx_mock, registry):
    # Artifactory (RTFACT-18971): the Link of `docker-remote/a` names `/v2/a/...`
    httpx_mock.add_response(
        url=f"{BASE}/v2/docker-remote/a/tags/list?n=1000",
        json={"tags": ["1"]},
        headers={"Link": '</v2/a/tags/list?last=1&n=1000&other=x>; rel="next"'},
    )
    httpx_mock.add_response(
        url=f"{BASE}/v2/docker-remote/a/tags/list?last=1&n=1000", json={"tags": ["2"]}
    )
    assert registry.list_tags("docker-remote/a").tags == ["1", "2"]


@pytest.mark.parametrize(
    ("message", "headers", "quota"),
    [
        ("Rate exceeded", {}, False),  # public.ecr.aws
        ("Rate exceeded", {"ratelimit-remaining": "0;w=21600"}, False),
        ("You have reached your pull rate limit.", {}, True),  # Docker Hub's own words
        ("slow down", {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0"}, True),
        ("slow down", {}, False),
    ],
)
def test_a_429_is_a_quota_only_when_it_says_so(httpx_mock, registry, message, headers, quota):
    httpx_mock.add_response(
        status_code=429,
        json={"errors": [{"code": "TOOMANYREQUESTS", "message": message}]},
        headers=headers,
        is_reusable=True,
    )
    with pytest.raises(TooManyRequestsError) as caught:
        registry.get_manifest("a", "1")
    assert caught.value.quota is quota


def test_a_manifest_whose_bytes_do_not_match_the_digest_asked_for_is_refused(httpx_mock, registry):
    wanted = "sha256:" + "0" * 64
    httpx_mock.add_response(content=b"{}", headers={"Content-Type": "application/json"})
    with pytest.raises(IntegrityError):
        registry.get_manifest("a", wanted)


def test_an_upload_keeps_the_session_state_in_the_query(httpx_mock, registry):
    httpx_mock.add_response(
        method="POST",
        status_code=202,
        headers={"Location": "/v2/a/blobs/uploads/uuid?_state=abc"},
    )
    httpx_mock.add_response(method="PUT", status_code=201)
    location = registry.start_upload("a")
    assert location == f"{BASE}/v2/a/blobs/uploads/uuid?_state=abc"
    registry.finish_upload(location, "sha256:" + "1" * 64, 3, [b"abc"])
    put = httpx_mock.get_requests()[-1]
    assert put.url.params["_state"] == "abc" and put.url.params["digest"].startswith("sha256:")
    assert put.headers["Content-Length"] == "3"


def test_a_mount_answered_201_needs_no_upload(httpx_mock, registry):
    httpx_mock.add_response(method="POST", status_code=201, headers={"Location": "/v2/a/blobs/x"})
    assert registry.start_upload("a", ("sha256:" + "1" * 64, "b")) is None


DIGEST = "sha256:" + "c" * 64
AN_INDEX = {"Content-Type": "application/vnd.oci.image.index.v1+json"}


def referrer(n: int, artifact_type: str) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + str(n) * 64,
        "size": 10,
        "artifactType": artifact_type,
    }


def test_referrers_follow_pagination_and_keep_the_artifact_type(httpx_mock, registry):
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/referrers/{DIGEST}",
        json={"schemaVersion": 2, "manifests": [referrer(1, "application/spdx+json")]},
        headers={"Link": f'</v2/a/referrers/{DIGEST}?last=1>; rel="next"', **AN_INDEX},
    )
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/referrers/{DIGEST}?last=1",
        json={"schemaVersion": 2, "manifests": [referrer(2, "application/vnd.in-toto+json")]},
        headers=AN_INDEX,
    )

    found = registry.get_referrers("a", DIGEST)

    assert [d.raw["artifactType"] for d in found] == [
        "application/spdx+json",
        "application/vnd.in-toto+json",
    ]


def test_a_registry_without_the_referrers_api_says_so_with_none(httpx_mock, registry):
    httpx_mock.add_response(url=f"{BASE}/v2/a/referrers/{DIGEST}", status_code=404, text="404")

    assert registry.get_referrers("a", DIGEST) is None


def test_an_error_body_is_read_only_as_far_as_its_limit_and_shown_escaped(httpx_mock, registry):
    sent = []

    def endless_error():
        yield b'{"errors": [{"code": "DENIED", "message": "\\u001b[2Jdenied"}], "pad": "'
        while len(sent) < 10_000:  # 640 MiB if it were all read
            sent.append(1)
            yield b"x" * 65536

    httpx_mock.add_response(status_code=403, stream=IteratorStream(endless_error()))
    with pytest.raises(AuthError) as caught:
        registry.get_manifest("a", "1")
    assert len(sent) <= 2  # 64 KiB and no more
    assert "\x1b" not in caught.value.message


def test_error_messages_are_escaped_and_shortened(httpx_mock, registry):
    message = "line\n\x1b[31mforged" + "x" * 5000
    body = json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode()
    httpx_mock.add_response(status_code=403, content=body)
    with pytest.raises(AuthError) as caught:
        registry.get_manifest("a", "1")
    assert caught.value.code == "DENIED"
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message
    assert "\\x1b[31mforged" in caught.value.message and len(caught.value.message) < 1000


def test_a_manifest_over_the_limit_is_refused(httpx_mock, registry):
    httpx_mock.add_response(content=b"{" + b" " * (4 * 2**20) + b"}")
    with pytest.raises(InvalidUpstreamDataError) as caught:
        registry.get_manifest("a", "1")
    assert "limit" in caught.value.message


def test_a_compressed_manifest_is_refused_not_inflated(httpx_mock, registry):
    httpx_mock.add_response(content=gzip.compress(b"{}"), headers={"Content-Encoding": "gzip"})
    with pytest.raises(InvalidUpstreamDataError) as caught:
        registry.get_manifest("a", "1")
    assert "Content-Encoding" in caught.value.message


def test_a_manifest_read_follows_a_redirect_and_is_still_verified(httpx_mock, registry):
    """registry.k8s.io answers every /v2/<name>/... with a 307 to Artifact Registry."""
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    backend = "https://backend.test/v2/k8s/images/a/manifests/1"
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/manifests/1", status_code=307, headers={"Location": backend}
    )
    httpx_mock.add_response(url=backend, content=body)
    assert registry.get_manifest("a", "1").digest == sha256_digest(body)


def test_a_3xx_that_is_not_a_redirect_is_not_a_manifest(httpx_mock, registry):
    httpx_mock.add_response(status_code=300)
    with pytest.raises(RegistryError) as caught:
        registry.get_manifest("a", "1")
    assert caught.value.status == 300


def test_invalid_tags_in_a_listing_are_dropped_and_counted(httpx_mock, registry):
    httpx_mock.add_response(json={"tags": ["1.0", "../x", "a b", 7, "1.0\n", "2.0"]})
    listing = registry.list_tags("a")
    assert listing.tags == ["1.0", "2.0"]
    assert len(listing.dropped) == 4 and all("\n" not in d for d in listing.dropped)


def test_a_next_page_on_another_origin_is_refused(httpx_mock, registry):
    httpx_mock.add_response(
        json={"tags": ["1"]}, headers={"Link": '<https://evil.test/v2/a/tags/list>; rel="next"'}
    )
    with pytest.raises(InvalidUpstreamDataError):
        registry.list_tags("a")
    assert [r.url.host for r in httpx_mock.get_requests()] == ["r.test"]


def test_a_header_digest_outside_the_grammar_is_refused(httpx_mock, registry):
    httpx_mock.add_response(headers={"Docker-Content-Digest": "sha256:../../x"})
    with pytest.raises(InvalidUpstreamDataError):
        registry.head_manifest("a", "1")


def test_a_reference_outside_the_grammar_never_becomes_a_request(httpx_mock, registry):
    for reference in ("../../b/manifests/1", "1 0", "sha512:aa/../x"):
        with pytest.raises(InvalidUpstreamDataError):
            registry.head_manifest("a", reference)
    assert httpx_mock.get_requests() == []


def test_a_manifest_fetched_by_a_sha512_digest_is_verified_with_sha512(httpx_mock, registry):
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    good = "sha512:" + hashlib.sha512(body).hexdigest()
    httpx_mock.add_response(content=body)
    assert registry.get_manifest("a", good).digest == good
    httpx_mock.add_response(content=body + b" ")
    with pytest.raises(IntegrityError):
        registry.get_manifest("a", good)
