"""Registry authentication as an httpx.Auth flow, so call sites never handle tokens.

On a 401 the flow reads the challenge: Basic sends the configured credentials; Bearer
asks the token realm for the scopes the request needs (from its path and method, plus
any the challenge names), caches the token by scope, and replays the request once.
Later requests for a cached scope carry the token up front and skip the 401 round trip.

Credentials stay with their origin (scheme, host and port of the registry's URL): only
requests to that origin carry Authorization, only a challenge from that origin is
answered (a CDN that a blob GET was redirected to may challenge; it gets nothing), and
the account credentials go only to the token realm that such a challenge names, once
`check_realm` has accepted it: https when the registry is, no userinfo, no link-local or
instance-metadata address. The realm gets the account credentials, never a token.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import httpx

from mirror.errors import (
    AuthError,
    InvalidUpstreamDataError,
    error_from_response,
    printable,
    safe_url,
)
from mirror.oci.limits import TOKEN_BODY_BYTES, read_bounded, read_error_body, request_timeout
from mirror.oci.origin import same_origin
from mirror.oci.types import parse_json_object

__all__ = [
    "Challenge",
    "Credentials",
    "RefreshingBasicAuth",
    "RegistryAuth",
    "check_realm",
    "parse_challenge",
    "scopes_for",
]

# Cloud instance-metadata endpoints: a realm there would hand the account to whoever
# can read the answer (IMDS, ECS task metadata, GCE).
_METADATA_HOSTS = frozenset(
    {"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "metadata.google.internal"}
)
_TOKEN_RE = re.compile(r"[!-~]{1,16384}", re.ASCII)  # visible ASCII: safe in a header
_TOKEN_MARGIN_SECONDS = 10.0
_DEFAULT_TOKEN_SECONDS = 60.0
_MAX_TOKEN_SECONDS = 86400.0
_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:manifests/[^/]+|blobs/uploads/.*|blobs/[^/]+|tags/list|referrers/[^/]+)$"
)


@dataclass(frozen=True)
class Credentials:
    """A username and a password or access token; the secret never shows in repr."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split()) - {""}


def parse_challenge(header: str) -> Challenge | None:
    """Parse a `WWW-Authenticate` value; None when it is absent or not Basic/Bearer."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params = {
        key.lower(): (quoted.replace('\\"', '"') if quoted is not None and quoted != "" else bare)
        for key, quoted, bare in _PARAM_RE.findall(rest)
    }
    return Challenge(scheme, params)


def check_realm(realm: str, registry: httpx.URL) -> httpx.URL:
    """The token realm a challenge from `registry` names, if credentials may go there."""

    def refuse(why: str) -> InvalidUpstreamDataError:
        return InvalidUpstreamDataError(
            f"token realm {printable(repr(safe_url(realm)), limit=200)} refused: {why}",
            hint="the registry's challenge names a realm mirror will not send credentials to",
        )

    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        raise refuse("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise refuse("not an http(s) URL")
    if registry.scheme == "https" and url.scheme != "https":
        raise refuse("plain http for an https registry")
    if url.userinfo:
        raise refuse("it carries a username or password")
    host = url.host.lower().strip("[]")
    if host in _METADATA_HOSTS:
        raise refuse("an instance-metadata address")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise refuse("a link-local, multicast or unspecified address")
    return url


def scopes_for(request: httpx.Request) -> frozenset[str]:
    """The token scopes a registry request needs, derived from its path and method."""
    match = _PATH_RE.match(request.url.path)
    if not match:
        return frozenset()
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    scopes = {f"repository:{match['name']}:{actions}"}
    mount_from = request.url.params.get("from")
    if mount_from:
        scopes.add(f"repository:{mount_from}:pull")
    return frozenset(scopes)


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Basic or Bearer auth for the registry at `origin`, with a token cache keyed by scope.

    Requests to any other origin (a blob redirect, an upload Location elsewhere) pass
    through untouched, and their 401s are not answered."""

    def __init__(
        self,
        credentials: Credentials | None,
        token_client: httpx.Client,
        registry: str = "",
        *,
        origin: str,
    ) -> None:
        self._credentials = credentials
        self._registry = registry
        self._origin = httpx.URL(origin)
        self._token_client = token_client
        self._tokens: dict[frozenset[str], _Token] = {}
        self._bearer: Challenge | None = None
        self._basic = False
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not same_origin(request.url, self._origin):
            yield request
            return
        scopes = scopes_for(request)
        self._authorize(request, scopes)
        response = yield request
        # Redirects are followed inside this flow: a 401 may come from the redirect target.
        if response.status_code != 401 or not same_origin(response.request.url, self._origin):
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if self._credentials is None or self._basic:
                return  # nothing to offer, or the offered credentials were refused
            self._basic = True
        else:
            wanted = scopes | challenge.scopes
            with self._lock:
                self._bearer = challenge
                self._tokens.pop(scopes, None)
            token = self._fetch_token(challenge, wanted)
            with self._lock:
                self._tokens[scopes] = token
        self._authorize(request, scopes)
        yield request

    def _authorize(self, request: httpx.Request, scopes: frozenset[str]) -> None:
        """Attach what is known to work, fetching a token up front once the realm is known."""
        if self._basic and self._credentials is not None:
            request.headers["Authorization"] = _basic_header(self._credentials)
            return
        with self._lock:
            token = self._tokens.get(scopes)
            challenge = self._bearer
        if (token is None or token.expires_at <= time.monotonic()) and challenge and scopes:
            token = self._fetch_token(challenge, scopes)
            with self._lock:
                self._tokens[scopes] = token
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.value}"

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError("Bearer challenge without a realm", status=401, code="UNAUTHORIZED")
        realm_url = check_realm(realm, self._origin)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", scope) for scope in sorted(scopes)]
        # The realm's own query string (some realms carry one) is kept.
        url = realm_url.copy_merge_params(httpx.QueryParams(params))
        headers = {"Authorization": _basic_header(self._credentials)} if self._credentials else {}
        prefix = f"{self._registry}: " if self._registry else ""
        what = f"{prefix}token request to {safe_url(realm_url)}"
        started = time.monotonic()
        request = self._token_client.build_request(
            "GET", url, headers=headers, timeout=request_timeout(self._token_client.timeout)
        )
        response = self._token_client.send(request, stream=True)
        try:
            if response.status_code != 200:
                error = error_from_response(response, what, read_error_body(response))
                who = f"user {self._credentials.username!r}" if self._credentials else "anonymous"
                raise AuthError(
                    f"{error.message} (as {who})",
                    status=response.status_code,
                    code=error.code,
                    hint="check the username and password/token configured for this registry",
                )
            body = parse_json_object(read_bounded(response, TOKEN_BODY_BYTES, what), what)
        finally:
            response.close()
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
            raise AuthError(
                f"{what} answered without a usable token",
                status=response.status_code,
                code="UNAUTHORIZED",
                hint="the token realm's answer has neither token nor access_token",
            )
        expires_in = body.get("expires_in")
        lifetime = (
            min(float(expires_in), _MAX_TOKEN_SECONDS)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else _DEFAULT_TOKEN_SECONDS
        )
        return _Token(value, started + max(0.0, lifetime - _TOKEN_MARGIN_SECONDS))


def _basic_header(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class RefreshingBasicAuth(httpx.Auth):
    """Basic credentials that expire, such as ECR's 12-hour `AWS:<token>`.

    `fetch` returns the credentials and when they expire (epoch seconds, or None). They are
    renewed before expiry and once on a 401. A token that is already past its stated
    expiry when fetched (moto's is dated 2015) is trusted for an hour and the 401 path.
    """

    REFRESH_MARGIN_SECONDS = 300.0
    UNKNOWN_VALIDITY_SECONDS = 3600.0

    def __init__(
        self,
        fetch: Callable[[], tuple[Credentials, float | None]],
        clock: Callable[[], float] = time.time,
        *,
        origin: str,
    ) -> None:
        self._fetch = fetch
        self._origin = httpx.URL(origin)
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._renew_at = 0.0

    def _current(self, *, stale: Credentials | None = None) -> Credentials:
        with self._lock:
            now = self._clock()
            if self._credentials is None or now >= self._renew_at or self._credentials == stale:
                credentials, expires_at = self._fetch()
                if expires_at is None or expires_at - self.REFRESH_MARGIN_SECONDS <= now:
                    self._renew_at = now + self.UNKNOWN_VALIDITY_SECONDS
                else:
                    self._renew_at = expires_at - self.REFRESH_MARGIN_SECONDS
                self._credentials = credentials
            return self._credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not same_origin(request.url, self._origin):
            yield request
            return
        used = self._current()
        request.headers["Authorization"] = _basic_header(used)
        response = yield request
        if response.status_code == 401 and same_origin(response.request.url, self._origin):
            request.headers["Authorization"] = _basic_header(self._current(stale=used))
            yield request
