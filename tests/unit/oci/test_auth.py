"""The auth flow: challenges, scoped token cache, Basic, and no secret in errors."""

import base64

import httpx
import pytest

from mirror.errors import (
    AuthError,
    InvalidUpstreamDataError,
    TokenRealmUnavailableError,
    is_retryable,
)
from mirror.oci.auth import (
    Credentials,
    RegistryAuth,
    parse_challenge,
    preferred_challenge,
    scopes_for,
)

REGISTRY = "https://registry.test"
REALM = "https://auth.test/token"
CHALLENGE = f'Bearer realm="{REALM}",service="registry.test"'


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://a/t",service="s",scope="repository:x:pull,push"',
            "bearer",
            {"realm": "https://a/t", "service": "s", "scope": "repository:x:pull,push"},
        ),
        ("bearer realm=https://a/t, service=s", "bearer", {"realm": "https://a/t", "service": "s"}),
        ('Basic realm="basic-realm"', "basic", {"realm": "basic-realm"}),
        ('Bearer realm="a \\"q\\" b"', "bearer", {"realm": 'a "q" b'}),
    ],
)
def test_challenges_parse(header, scheme, params):
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params)


@pytest.mark.parametrize("header", ["", "Negotiate abc", "garbage"])
def test_unknown_challenges_are_ignored(header):
    assert parse_challenge(header) is None


def test_scopes_come_from_path_method_and_mount_source():
    get = httpx.Request("GET", f"{REGISTRY}/v2/a/b/blobs/sha256:1")
    assert scopes_for(get) == {"repository:a/b:pull"}
    mount = httpx.Request("POST", f"{REGISTRY}/v2/a/b/blobs/uploads/?mount=sha256:1&from=c/d")
    assert scopes_for(mount) == {"repository:a/b:pull,push", "repository:c/d:pull"}
    tricky = httpx.Request("HEAD", f"{REGISTRY}/v2/x/blobs/y/manifests/1")
    assert scopes_for(tricky) == {"repository:x/blobs/y:pull"}


def client(credentials=None):
    return httpx.Client(auth=RegistryAuth(credentials, httpx.Client(), origin=REGISTRY))


def test_a_bearer_challenge_fetches_a_scoped_token_once_and_reuses_it(httpx_mock):
    url = f"{REGISTRY}/v2/library/nginx/manifests/1"
    httpx_mock.add_response(
        url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE}, match_headers={}
    )
    httpx_mock.add_response(
        url=httpx.URL(
            REALM, params={"service": "registry.test", "scope": "repository:library/nginx:pull"}
        ),
        json={"access_token": "tok-1", "expires_in": 300},
    )
    httpx_mock.add_response(
        url=url, match_headers={"Authorization": "Bearer tok-1"}, is_reusable=True
    )
    with client() as http:
        assert http.get(url).status_code == 200
        assert http.head(url).status_code == 200
    token_requests = [r for r in httpx_mock.get_requests() if r.url.host == "auth.test"]
    assert len(token_requests) == 1


def test_a_known_realm_gets_a_token_for_a_new_repository_without_a_401(httpx_mock):
    httpx_mock.add_response(
        url=f"{REGISTRY}/v2/a/manifests/1", status_code=401, headers={"WWW-Authenticate": CHALLENGE}
    )
    httpx_mock.add_response(
        url=httpx.URL(REALM, params={"service": "registry.test", "scope": "repository:a:pull"}),
        json={"token": "ta"},
    )
    httpx_mock.add_response(
        url=httpx.URL(REALM, params={"service": "registry.test", "scope": "repository:b:pull"}),
        json={"token": "tb"},
    )
    httpx_mock.add_response(
        url=f"{REGISTRY}/v2/a/manifests/1", match_headers={"Authorization": "Bearer ta"}
    )
    httpx_mock.add_response(
        url=f"{REGISTRY}/v2/b/manifests/1", match_headers={"Authorization": "Bearer tb"}
    )
    with client() as http:
        assert http.get(f"{REGISTRY}/v2/a/manifests/1").status_code == 200
        assert http.get(f"{REGISTRY}/v2/b/manifests/1").status_code == 200
    b_requests = [r for r in httpx_mock.get_requests() if r.url.path == "/v2/b/manifests/1"]
    assert len(b_requests) == 1


def test_account_credentials_go_to_the_token_realm_only(httpx_mock):
    url = f"{REGISTRY}/v2/a/manifests/1"
    basic = "Basic " + base64.b64encode(b"alice:pw-123").decode()
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
    httpx_mock.add_response(
        url=httpx.URL(REALM, params={"service": "registry.test", "scope": "repository:a:pull"}),
        match_headers={"Authorization": basic},
        json={"token": "t"},
    )
    httpx_mock.add_response(url=url, match_headers={"Authorization": "Bearer t"})
    with client(Credentials("alice", "pw-123")) as http:
        assert http.get(url).status_code == 200


def test_a_refused_token_request_names_the_user_but_not_the_password(httpx_mock):
    url = f"{REGISTRY}/v2/a/manifests/1"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
    httpx_mock.add_response(status_code=401, json={"details": "incorrect username or password"})
    with client(Credentials("alice", "pw-123")) as http, pytest.raises(AuthError) as caught:
        http.get(url)
    assert "alice" in str(caught.value) and "pw-123" not in str(caught.value)
    assert caught.value.code == "UNAUTHORIZED"


@pytest.mark.parametrize("status", [401, 403])
def test_an_anonymous_token_refused_is_not_found_or_denied(httpx_mock, status):
    # GHCR: a private or misspelt package; there are no credentials to check
    url = f"{REGISTRY}/v2/org/private/manifests/1"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
    httpx_mock.add_response(status_code=status, json={"errors": [{"code": "UNAUTHORIZED"}]})
    with client() as http, pytest.raises(AuthError) as caught:
        http.get(url)
    assert caught.value.code == "NOT_FOUND_OR_DENIED"
    assert "the package may be private (add credentials" in caught.value.hint
    assert "username" not in str(caught.value)
    assert not is_retryable(caught.value)


def test_basic_challenge_sends_credentials_and_then_up_front(httpx_mock):
    url = f"{REGISTRY}/v2/a/manifests/1"
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    httpx_mock.add_response(
        url=url, status_code=401, headers={"WWW-Authenticate": 'Basic realm="r"'}
    )
    httpx_mock.add_response(url=url, match_headers={"Authorization": basic}, is_reusable=True)
    with client(Credentials("u", "p")) as http:
        assert http.get(url).status_code == 200
        assert http.get(url).status_code == 200
    assert len(httpx_mock.get_requests()) == 3


def test_basic_challenge_without_credentials_returns_the_401(httpx_mock):
    url = f"{REGISTRY}/v2/a/manifests/1"
    httpx_mock.add_response(
        url=url, status_code=401, headers={"WWW-Authenticate": 'Basic realm="r"'}
    )
    with client() as http:
        assert http.get(url).status_code == 401


def test_credentials_never_show_in_repr():
    assert "secret" not in repr(Credentials("u", "secret"))


@pytest.mark.parametrize(
    ("realm", "why"),
    [
        ("http://auth.test/token", "plain http for an https registry"),
        ("https://user:pw@auth.test/token", "username or password"),
        ("https://169.254.169.254/latest/meta-data", "instance-metadata"),
        ("https://169.254.170.2/v2/credentials", "instance-metadata"),
        ("https://[fe80::1]/token", "link-local"),
        ("https://169.254.1.1/token", "link-local"),
        ("file:///etc/passwd", "not an http(s) URL"),
    ],
)
def test_a_realm_the_credentials_must_not_go_to_is_refused_before_any_request(
    httpx_mock, realm, why
):
    url = f"{REGISTRY}/v2/a/manifests/1"
    httpx_mock.add_response(
        url=url, status_code=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'}
    )
    with (
        client(Credentials("alice", "pw-123")) as http,
        pytest.raises(InvalidUpstreamDataError) as caught,
    ):
        http.get(url)
    assert why in caught.value.message and "pw-123" not in str(caught.value)
    assert [r.url.host for r in httpx_mock.get_requests()] == ["registry.test"]


def test_a_redirect_target_that_challenges_gets_an_anonymous_token_never_the_account(
    httpx_mock,
):
    """registry.k8s.io sends reads on to Artifact Registry, which has its own realm."""
    manifest = f"{REGISTRY}/v2/pause/manifests/3.9"
    backend = "https://backend.test/v2/k8s/images/pause/manifests/3.9"
    challenge = 'Bearer realm="https://backend.test/token",service="backend"'
    httpx_mock.add_response(url=manifest, status_code=307, headers={"Location": backend})
    httpx_mock.add_response(url=backend, status_code=401, headers={"WWW-Authenticate": challenge})
    params = {"service": "backend", "scope": "repository:k8s/images/pause:pull"}
    httpx_mock.add_response(
        url=httpx.URL("https://backend.test/token", params=params), json={"token": "anon"}
    )
    httpx_mock.add_response(url=backend, match_headers={"Authorization": "Bearer anon"})

    with client(Credentials("alice", "pw-123")) as http:
        assert http.get(manifest, follow_redirects=True).status_code == 200

    token_request = httpx_mock.get_requests()[2]
    assert "authorization" not in token_request.headers  # anonymous: the account stays home
    basic = "Basic " + base64.b64encode(b"alice:pw-123").decode()
    assert all(r.headers.get("authorization") != basic for r in httpx_mock.get_requests())


@pytest.mark.parametrize(
    ("headers", "scheme", "realm"),
    [
        (['Bearer realm="https://a/t",service="s", Basic realm="b"'], "bearer", "https://a/t"),
        (['Basic realm="b", Bearer realm="https://a/t",service="s"'], "bearer", "https://a/t"),
        (['Basic realm="b"', 'Bearer realm="https://a/t"'], "bearer", "https://a/t"),
        (['Basic realm="b,c"'], "basic", "b,c"),
    ],
)
def test_of_several_challenges_bearer_wins_and_parameters_never_mix(headers, scheme, realm):
    challenge = preferred_challenge(headers)
    assert challenge is not None and (challenge.scheme, challenge.params["realm"]) == (
        scheme,
        realm,
    )
    if scheme == "bearer" and "service" in headers[-1] + headers[0]:
        assert set(challenge.params) == {"realm", "service"}


@pytest.mark.parametrize(("status", "transient"), [(429, True), (503, True), (401, False)])
def test_only_a_401_or_403_from_the_realm_blames_the_credentials(httpx_mock, status, transient):
    url = f"{REGISTRY}/v2/a/manifests/1"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
    params = {"service": "registry.test", "scope": "repository:a:pull"}
    httpx_mock.add_response(url=httpx.URL(REALM, params=params), status_code=status)
    expected = TokenRealmUnavailableError if transient else AuthError
    with client(Credentials("alice", "pw-123")) as http, pytest.raises(expected) as caught:
        http.get(url)
    assert is_retryable(caught.value) is transient
    assert ("username and password" in caught.value.hint) is not transient


def test_a_request_to_another_origin_carries_no_credentials(httpx_mock):
    httpx_mock.add_response(url="https://elsewhere.test/v2/a/tags/list")
    with client(Credentials("u", "p")) as http:
        http.get("https://elsewhere.test/v2/a/tags/list")
    assert "authorization" not in httpx_mock.get_requests()[0].headers


def test_the_realm_keeps_its_own_query_string(httpx_mock):
    url = f"{REGISTRY}/v2/a/manifests/1"
    challenge = 'Bearer realm="https://auth.test/token?tenant=acme",service="s"'
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": challenge})
    params = {"tenant": "acme", "service": "s", "scope": "repository:a:pull"}
    httpx_mock.add_response(
        url=httpx.URL("https://auth.test/token", params=params), json={"token": "t"}
    )
    httpx_mock.add_response(url=url, match_headers={"Authorization": "Bearer t"})
    with client() as http:
        assert http.get(url).status_code == 200


@pytest.mark.parametrize(
    "body", [{"expires_in": 60}, {"token": None}, {"token": 5}, {"token": "a\r\nb"}, []]
)
def test_a_token_answer_without_a_usable_token_is_an_error(httpx_mock, body):
    url = f"{REGISTRY}/v2/a/manifests/1"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
    httpx_mock.add_response(json=body)
    with client() as http, pytest.raises((AuthError, InvalidUpstreamDataError)):
        http.get(url)
    assert len(httpx_mock.get_requests()) == 2  # never replayed with "Bearer None"
