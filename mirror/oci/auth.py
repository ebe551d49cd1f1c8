"""Registry authentication as an httpx.Auth flow, so call sites never handle tokens.

On a 401 the flow reads the challenge: Basic sends the configured credentials; Bearer
asks the token realm for the scopes the request needs (from its path and method, plus
any the challenge names), caches the token by scope, and replays the request once.
Later requests for a cached scope carry the token up front and skip the 401 round trip.

Authorization is only ever attached to the registry's own requests: httpx drops it when a
blob GET is redirected to another origin (a CDN or S3), and the token realm receives the
account credentials, never a registry token.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import httpx

from mirror.errors import AuthError, error_from_response, safe_url

__all__ = [
    "Challenge",
    "Credentials",
    "RefreshingBasicAuth",
    "RegistryAuth",
    "parse_challenge",
    "scopes_for",
]

_TOKEN_MARGIN_SECONDS = 10.0
_DEFAULT_TOKEN_SECONDS = 60.0
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
    """Basic or Bearer auth for one registry host, with a token cache keyed by scope."""

    def __init__(
        self, credentials: Credentials | None, token_client: httpx.Client, registry: str = ""
    ) -> None:
        self._credentials = credentials
        self._registry = registry
        self._token_client = token_client
        self._tokens: dict[frozenset[str], _Token] = {}
        self._bearer: Challenge | None = None
        self._basic = False
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = scopes_for(request)
        self._authorize(request, scopes)
        response = yield request
        if response.status_code != 401:
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
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", scope) for scope in sorted(scopes)]
        headers = {"Authorization": _basic_header(self._credentials)} if self._credentials else {}
        started = time.monotonic()
        response = self._token_client.get(realm, params=params, headers=headers)
        if response.status_code != 200:
            prefix = f"{self._registry}: " if self._registry else ""
            what = f"{prefix}token request to {safe_url(realm)}"
            error = error_from_response(response, what)
            who = f"user {self._credentials.username!r}" if self._credentials else "anonymous"
            raise AuthError(
                f"{error.message} (as {who})",
                status=response.status_code,
                code=error.code,
                hint="check the username and password/token configured for this registry",
            )
        try:
            body = response.json()
            value = str(body.get("token") or body.get("access_token"))
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError) as exc:
            raise AuthError(
                f"token realm {safe_url(realm)} answered without a token",
                status=response.status_code,
                code="UNAUTHORIZED",
            ) from exc
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
    ) -> None:
        self._fetch = fetch
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
        used = self._current()
        request.headers["Authorization"] = _basic_header(used)
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = _basic_header(self._current(stale=used))
            yield request
