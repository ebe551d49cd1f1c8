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
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from mirror.errors import (
    AuthError,
    InvalidUpstreamDataError,
    RegistryError,
    TokenRealmUnavailableError,
    error_from_response,
    printable,
    safe_url,
)
from mirror.oci.addresses import refused_host
from mirror.oci.credentials import Credentials
from mirror.oci.limits import TOKEN_BODY_BYTES, read_bounded, read_error_body, request_timeout
from mirror.oci.origin import Origin, origin_of, same_origin
from mirror.oci.types import parse_json_object
from mirror.secrets import remember

__all__ = [
    "Challenge",
    "RefreshingBasicAuth",
    "RegistryAuth",
    "check_realm",
    "parse_challenge",
    "parse_challenges",
    "preferred_challenge",
    "scopes_for",
]

_TOKEN_RE = re.compile(r"[!-~]{1,16384}", re.ASCII)  # visible ASCII: safe in a header
_TOKEN_MARGIN_SECONDS = 10.0
_DEFAULT_TOKEN_SECONDS = 60.0
_MAX_TOKEN_SECONDS = 86400.0
_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:manifests/[^/]+|blobs/uploads/.*|blobs/[^/]+|tags/list|referrers/[^/]+)$"
)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split()) - {""}


# One token of a WWW-Authenticate value: an auth-param (`key=value`, the value quoted or
# not) or an auth-scheme that starts the next challenge (RFC 7235, section 4.1).
_CHALLENGE_TOKEN_RE = re.compile(
    r'\s*,?\s*(?:(?P<key>[A-Za-z][\w-]*)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s,]*))'
    r"|(?P<scheme>[A-Za-z][\w-]*))"
)


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Every Basic and Bearer challenge in the `WWW-Authenticate` values, each with its own
    parameters: one header may hold several (`Bearer realm=..., Basic realm=...`)."""
    found: list[Challenge] = []
    for value in values:
        scheme: str | None = None
        params: dict[str, str] = {}
        for match in _CHALLENGE_TOKEN_RE.finditer(value):
            if match["scheme"]:
                if scheme in ("basic", "bearer"):
                    found.append(Challenge(scheme, params))
                scheme, params = match["scheme"].lower(), {}
            elif match["key"] and scheme is not None:
                quoted = match["quoted"]
                text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match["bare"]
                params.setdefault(match["key"].lower(), text)
        if scheme in ("basic", "bearer"):
            found.append(Challenge(scheme, params))
    return found


def preferred_challenge(values: list[str]) -> Challenge | None:
    """Bearer over Basic, never a mix of the two."""
    challenges = parse_challenges(values)
    bearer = [c for c in challenges if c.scheme == "bearer"]
    ranked = bearer or challenges
    return ranked[0] if ranked else None


def parse_challenge(header: str) -> Challenge | None:
    """The challenge to answer in one `WWW-Authenticate` value; None when it holds no
    Basic or Bearer challenge."""
    return preferred_challenge([header])


def check_realm(realm: str, registry: httpx.URL) -> httpx.URL:
    """The token realm a challenge from `registry` names, if credentials may go there."""

    def refuse(why: str) -> InvalidUpstreamDataError:
        try:
            shown = safe_url(realm)
        except httpx.InvalidURL:  # not a URL at all: shown without any userinfo parsing
            shown = realm.split("@")[-1]
        return InvalidUpstreamDataError(
            f"token realm {printable(repr(shown), limit=200)} refused: {why}",
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
    reason = refused_host(url.host)
    if reason is not None:
        raise refuse(reason)
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

    Requests are only ever sent with credentials to `origin`. A redirect elsewhere (a
    registry.k8s.io read sent on to Artifact Registry, a blob sent to a CDN) that answers
    401 with its own Bearer challenge gets an anonymous token from its own realm, and the
    request is replayed there: the configured account never leaves its origin."""

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
        self._foreign: dict[tuple[Origin, frozenset[str]], _Token] = {}
        self._bearer: Challenge | None = None
        self._basic = False
        self._lock = threading.Lock()
        self.realm_failures = 0  # transient token-realm failures (429, 5xx), each retried

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not same_origin(request.url, self._origin):  # a page the registry sent us to
            response = yield request
            challenge = preferred_challenge(response.headers.get_list("www-authenticate"))
            if response.status_code == 401 and challenge and challenge.scheme == "bearer":
                yield self._anonymous_replay(request, response.request.url, challenge)
            return
        scopes = scopes_for(request)
        self._authorize(request, scopes)
        response = yield request
        if response.status_code != 401:
            return
        challenge = preferred_challenge(response.headers.get_list("www-authenticate"))
        if challenge is None:
            return
        # Redirects are followed inside this flow: the 401 may come from the redirect target.
        if not same_origin(response.request.url, self._origin):
            if challenge.scheme == "bearer":
                yield self._anonymous_replay(request, response.request.url, challenge)
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
            token = self._fetch_token(challenge, wanted, self._credentials, self._origin)
            with self._lock:
                self._tokens[scopes] = token
        self._authorize(request, scopes)
        yield request

    def _anonymous_replay(
        self, request: httpx.Request, url: httpx.URL, challenge: Challenge
    ) -> httpx.Request:
        """The request again, at the origin that challenged, with its own anonymous token."""
        replay = httpx.Request(request.method, url, headers=request.headers)
        replay.headers.pop("Authorization", None)
        scopes = scopes_for(replay) | challenge.scopes
        key = (origin_of(url), scopes)
        with self._lock:
            token = self._foreign.get(key)
        if token is None or token.expires_at <= time.monotonic():
            token = self._fetch_token(challenge, scopes, None, url)
            with self._lock:
                self._foreign[key] = token
        replay.headers["Authorization"] = f"Bearer {token.value}"
        return replay

    def _authorize(self, request: httpx.Request, scopes: frozenset[str]) -> None:
        """Attach what is known to work, fetching a token up front once the realm is known."""
        if self._basic and self._credentials is not None:
            request.headers["Authorization"] = _basic_header(self._credentials)
            return
        with self._lock:
            token = self._tokens.get(scopes)
            challenge = self._bearer
        if (token is None or token.expires_at <= time.monotonic()) and challenge and scopes:
            token = self._fetch_token(challenge, scopes, self._credentials, self._origin)
            with self._lock:
                self._tokens[scopes] = token
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.value}"

    def _fetch_token(
        self,
        challenge: Challenge,
        scopes: frozenset[str],
        credentials: Credentials | None,
        challenger: httpx.URL,
    ) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError("Bearer challenge without a realm", status=401, code="UNAUTHORIZED")
        realm_url = check_realm(realm, challenger)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", scope) for scope in sorted(scopes)]
        # The realm's own query string (some realms carry one) is kept.
        url = realm_url.copy_merge_params(httpx.QueryParams(params))
        headers = {"Authorization": _basic_header(credentials)} if credentials else {}
        prefix = f"{self._registry}: " if self._registry else ""
        what = f"{prefix}token request to {safe_url(realm_url)}"
        started = time.monotonic()
        request = self._token_client.build_request(
            "GET", url, headers=headers, timeout=request_timeout(self._token_client.timeout)
        )
        response = self._token_client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise self._realm_error(response, what, credentials)
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
        remember(value)
        expires_in = body.get("expires_in")
        lifetime = (
            min(float(expires_in), _MAX_TOKEN_SECONDS)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else _DEFAULT_TOKEN_SECONDS
        )
        return _Token(value, started + max(0.0, lifetime - _TOKEN_MARGIN_SECONDS))

    def _realm_error(
        self, response: httpx.Response, what: str, credentials: Credentials | None
    ) -> RegistryError:
        """Only a 401 or 403 from the realm blames the credentials; a throttled or failing
        realm (auth.docker.io's 429s and 5xx, GHCR's shared anonymous limit) is transient
        and the request is retried with backoff."""
        status = response.status_code
        error = error_from_response(response, what, read_error_body(response))
        if status in (429, 408) or status >= 500:
            with self._lock:
                self.realm_failures += 1
            return TokenRealmUnavailableError(
                error.message,
                status=status,
                code="TOKEN_REALM_UNAVAILABLE",
                hint="the registry's token service is throttling or failing; mirror retries",
                retry_after=error.retry_after,
            )
        if status in (401, 403) and credentials is None:
            # GHCR refuses an anonymous token for a private or misspelt package: there
            # are no credentials to blame.
            return AuthError(
                f"{error.message} (anonymous)",
                status=status,
                code="NOT_FOUND_OR_DENIED",
                hint="check the image name; the package may be private (add credentials "
                "for this registry)",
            )
        if status in (401, 403):
            assert credentials is not None
            return AuthError(
                f"{error.message} (as user {credentials.username!r})",
                status=status,
                code=error.code,
                hint="check the username and password/token configured for this registry",
            )
        return RegistryError(error.message, status=status, code=error.code, hint=error.hint)


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
