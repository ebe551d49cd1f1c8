"""Registry client edge cases: pagination, error bodies, odd statuses, retries."""

import httpx
import pytest

from mirror.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    RegistryError,
    ServerError,
    TooManyRequestsError,
)
from mirror.oci.client import RegistryClient
from mirror.oci.types import sha256_digest
from mirror.retry import RetryPolicy

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
    assert registry.list_tags("a") == ["1", "2", "3"]


def test_a_link_loop_does_not_spin_forever(httpx_mock, registry):
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/tags/list?n=1000",
        json={"tags": ["1"]},
        headers={"Link": '</v2/a/tags/list?n=1000>; rel="next"'},
    )
    assert registry.list_tags("a") == ["1"]


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
    httpx_mock.add_response(method="HEAD", status_code=404)
    assert registry.head_manifest("a", "1") is None


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
        headers={"Link": f'</v2/a/referrers/{DIGEST}?last=1>; rel="next"'},
    )
    httpx_mock.add_response(
        url=f"{BASE}/v2/a/referrers/{DIGEST}?last=1",
        json={"schemaVersion": 2, "manifests": [referrer(2, "application/vnd.in-toto+json")]},
    )

    found = registry.get_referrers("a", DIGEST)

    assert [d.raw["artifactType"] for d in found] == [
        "application/spdx+json",
        "application/vnd.in-toto+json",
    ]


def test_a_registry_without_the_referrers_api_says_so_with_none(httpx_mock, registry):
    httpx_mock.add_response(url=f"{BASE}/v2/a/referrers/{DIGEST}", status_code=404, text="404")

    assert registry.get_referrers("a", DIGEST) is None
