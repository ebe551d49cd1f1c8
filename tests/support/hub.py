"""A Docker-Hub-like front in front of a real registry, modelled on Docker's documentation.

- Bearer token realm (`/token?service=registry.docker.io&scope=repository:NAME:pull`),
  anonymous or with an account's username + access token (Basic) on the token request;
  answers `token` and `access_token` with `expires_in`.
- Manifest GETs count against the pull limit, HEADs do not; both carry
  `ratelimit-limit: N;w=SECONDS`, `ratelimit-remaining: R;w=SECONDS` and
  `docker-ratelimit-source`. Limits are per account, or per client address when anonymous.
- A spent quota answers 429 with a `TOOMANYREQUESTS` error body and no `Retry-After`.
- Blob GETs answer 307 to a second port (the "CDN") that refuses any request carrying
  `Authorization`, and answers `Range: bytes=N-` with a 206 (as CDNs and S3 do).
- Tag lists paginate with `n` (100 at most) and `last`, and a `Link: <...>; rel="next"` header.
- Every registry API request's arrival is timed (`counters.request_times`), to hold a
  client to the request rate Docker's abuse limit asks for ("in the order of thousands of
  requests per minute" per address, Docker Hub usage and limits).

The window is fixed (it starts at the first pull), which is enough to test clients.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx

from tests.support import serving
from tests.support.registry import free_port

__all__ = ["DockerHubFront"]

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_MANIFEST_RE = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_REFERRERS_RE = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[a-f0-9]{64})$")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_CDN_RE = re.compile(r"^/cdn/(?P<name>.+)/(?P<digest>sha256:[a-f0-9]{64})$")


@dataclass
class _Quota:
    used: int = 0
    window_start: float = 0.0


@dataclass
class HubCounters:
    manifest_gets: int = 0
    manifest_heads: int = 0
    blob_redirects: int = 0
    token_requests: int = 0
    rejected_429: int = 0
    cdn_auth_rejections: int = 0
    compressed_blobs: int = 0
    cdn_signatures: list[str] = field(default_factory=list)  # presigned URLs' secrets
    cdn_used_signatures: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, query
    request_times: list[float] = field(default_factory=list)  # epoch seconds, /v2/ requests


class DockerHubFront:
    """`with DockerHubFront(backend_url) as hub:`; point `registries.docker.io.url` at hub.url."""

    def __init__(
        self, backend_url: str, *, limit: int = 1000, window: int = 21600, port: int | None = None
    ) -> None:
        self.backend = httpx.Client(base_url=backend_url, timeout=60)
        self.limit = limit
        self.window = window
        self.accounts: dict[str, str] = {}  # username -> access token
        self.account_limits: dict[str, int] = {}  # an account's own limit (default: `limit`)
        self.enforced_limit: int | None = None  # the real quota, when lower than advertised
        self.retry_after: int | None = None  # Retry-After on quota 429s (Docker omits it)
        self.corrupt: set[str] = set()  # blob digests the CDN serves with a flipped byte
        self.cut_next_blobs = 0  # this many CDN answers stop halfway and drop the connection
        # Every CDN answer stops after this many bytes and drops the connection, as a CDN
        # that cuts large blobs does (registry.k8s.io#333, anchore/stereoscope#695).
        self.cut_every: int | None = None
        self.cdn_ignores_range = False  # answer a Range request with the whole blob (200)
        self.cdn_range_offset: int | None = None  # a 206 whose Content-Range starts here
        self.single_use_urls = False  # a presigned URL serves once; again, it has expired
        self.cdn_bytes: dict[str, int] = {}  # bytes the CDN sent, by digest
        self.cdn_ranges: list[str] = []  # the Range header of each CDN request ("" if none)
        self.cdn_mib_per_second: float | None = None  # a slow CDN, for shutdowns mid-upload
        # Serve the OCI 1.1 referrers API (from the backend's `sha256-<hex>` fallback tag);
        # off, the endpoint is a 404 like a registry without it.
        self.referrers_api = False
        # Registry personalities (tests/e2e/test_personalities.py cites the source of each):
        self.token_failures: list[int] = []  # statuses the realm answers first, one each
        self.unknown_is_401 = False  # a repository that does not exist: 401, as Docker Hub
        self.head_digest = True  # False: HEADs carry no Docker-Content-Digest
        self.compress_when_asked = False  # the CDN gzips blobs for Accept-Encoding: gzip
        # The CDN labels every blob Content-Encoding: gzip, its bytes unchanged (Apache in
        # front of Pulp, moby/moby#17595), or gzips them whatever was asked ("always").
        self.gzip_label: str | None = None  # None | "label" | "always"
        self.referrers_answer: str | None = None  # "406", "html", "500": odd API answers
        self.gitlab_fallback = False  # `sha256-<hex>` resolves to the image itself
        self.basic_challenge_too = False  # Basic offered beside Bearer in one header
        self.realm_query = ""  # e.g. "tenant=acme": the realm URL carries its own query
        # The realm refuses anonymous tokens (401), as GHCR does for a private or
        # misspelt package.
        self.anonymous_denied = False
        self.counters = HubCounters()
        self._tokens: dict[str, tuple[str | None, set[str]]] = {}
        self._quotas: dict[str, _Quota] = {}
        self._lock = threading.Lock()
        self.port, self.cdn_port = port or free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn_port}"
        self._servers = [
            _server(self.port, _FrontHandler, self),
            _server(self.cdn_port, _CdnHandler, self),
        ]

    def __enter__(self) -> DockerHubFront:
        for server in self._servers:
            serving.start(server)
        return self

    def __exit__(self, *_: object) -> None:
        for server in self._servers:
            serving.stop(server)
        self.backend.close()

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = HubCounters()

    # --- quota -----------------------------------------------------------------------
    def _quota(self, source: str) -> _Quota:
        quota = self._quotas.setdefault(source, _Quota())
        if quota.used and time.monotonic() - quota.window_start >= self.window:
            quota.used = 0
        return quota

    def _limit(self, source: str) -> int:
        return self.account_limits.get(source, self.limit)

    def rate_headers(self, source: str) -> dict[str, str]:
        with self._lock:
            limit = self._limit(source)
            remaining = max(0, limit - self._quota(source).used)
        return {
            "ratelimit-limit": f"{limit};w={self.window}",
            "ratelimit-remaining": f"{remaining};w={self.window}",
            "docker-ratelimit-source": source,
        }

    def spend(self, source: str) -> bool:
        with self._lock:
            quota = self._quota(source)
            real = self._limit(source) if self.enforced_limit is None else self.enforced_limit
            if quota.used >= real:
                self.counters.rejected_429 += 1
                return False
            if quota.used == 0:
                quota.window_start = time.monotonic()
            quota.used += 1
            self.counters.manifest_gets += 1
            return True

    # --- tokens ----------------------------------------------------------------------
    def issue_token(self, account: str | None, scopes: set[str]) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (account, scopes)
            self.counters.token_requests += 1
        return token

    def token_info(self, header: str | None) -> tuple[str | None, set[str]] | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self._lock:
            return self._tokens.get(header[len("Bearer ") :])


def _server(port: int, handler: type[BaseHTTPRequestHandler], hub: DockerHubFront) -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.hub = hub  # type: ignore[attr-defined]
    return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> DockerHubFront:
        return self.server.hub  # type: ignore[attr-defined, no-any-return]

    def log_message(self, *_: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
        self.reply(status, body.encode(), {"Content-Type": "application/json", **(headers or {})})


class _FrontHandler(_Handler):
    def do_GET(self) -> None:
        self.route()

    def do_HEAD(self) -> None:
        self.route()

    def route(self) -> None:
        parsed = urlparse(self.path)
        now = time.time()
        with self.hub._lock:
            self.hub.counters.requests.append((self.command, parsed.path, parsed.query))
            if parsed.path.startswith("/v2/"):
                self.hub.counters.request_times.append(now)
        if parsed.path == "/token":
            return self.token(parse_qs(parsed.query))
        if parsed.path == "/v2/":
            if self.hub.token_info(self.headers.get("Authorization")) is None:
                return self.challenge(None)
            return self.reply(200, b"{}", {"Content-Type": "application/json"})
        for pattern, handler in (
            (_MANIFEST_RE, self.manifest),
            (_BLOB_RE, self.blob),
            (_TAGS_RE, self.tags),
            (_REFERRERS_RE, self.referrers),
        ):
            match = pattern.match(parsed.path)
            if match:
                info = self.hub.token_info(self.headers.get("Authorization"))
                name = match["name"]
                if info is None or f"repository:{name}:pull" not in info[1]:
                    return self.challenge(name)
                source = info[0] or self.client_address[0]
                if self.hub.unknown_is_401 and not self.known(name):
                    return self.challenge(name)  # a valid token, and still 401
                return handler(match, source, parse_qs(parsed.query))
        return self.error(404, "NOT_FOUND", "no such endpoint")

    def challenge(self, name: str | None) -> None:
        realm = f"{self.hub.url}/token" + (
            f"?{self.hub.realm_query}" if self.hub.realm_query else ""
        )
        value = f'Bearer realm="{realm}",service="registry.docker.io"'
        if name:
            value += f',scope="repository:{name}:pull",error="insufficient_scope"'
        if self.hub.basic_challenge_too:
            value = f'Basic realm="docker", {value}'
        self.error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": value})

    def token(self, query: dict[str, list[str]]) -> None:
        with self.hub._lock:
            failure = self.hub.token_failures.pop(0) if self.hub.token_failures else None
        if failure is not None:
            return self.error(failure, "UNAVAILABLE", "token service unavailable")
        if self.hub.realm_query:
            key, _, value = self.hub.realm_query.partition("=")
            if query.get(key) != [value]:
                return self.reply(400, b'{"details":"the realm query string was dropped"}')
        account = None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.hub.accounts.get(user) != password:
                return self.reply(
                    401,
                    b'{"details":"incorrect username or password"}',
                    {"Content-Type": "application/json"},
                )
            account = user
        elif self.hub.anonymous_denied:
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            return self.reply(401, json.dumps(body).encode(), {"Content-Type": "application/json"})
        if query.get("service") != ["registry.docker.io"]:
            return self.reply(400, b'{"details":"invalid service"}')
        scopes = {s for scope in query.get("scope", []) for s in _expand_scope(scope)}
        token = self.hub.issue_token(account, scopes)
        body = {
            "token": token,
            "access_token": token,
            "expires_in": 300,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def known(self, name: str) -> bool:
        return self.hub.backend.get(f"/v2/{name}/tags/list").status_code == 200

    def manifest(self, match: re.Match[str], source: str, _query: Any) -> None:
        ref = match["ref"]
        if self.hub.gitlab_fallback and ref.startswith("sha256-"):
            ref = "sha256:" + ref.removeprefix("sha256-")  # the image itself, not an index
        if self.command == "GET" and not self.hub.spend(source):
            headers = self.hub.rate_headers(source)
            if self.hub.retry_after is not None:
                headers["Retry-After"] = str(self.hub.retry_after)
            return self.error(
                429,
                "TOOMANYREQUESTS",
                "You have reached your pull rate limit. https://www.docker.com/increase-rate-limit",
                headers,
            )
        if self.command == "HEAD":
            with self.hub._lock:
                self.hub.counters.manifest_heads += 1
        backend = self.hub.backend.request(
            self.command,
            f"/v2/{match['name']}/manifests/{ref}",
            headers={"Accept": ", ".join(self.headers.get_all("Accept") or [ACCEPT])},
        )
        kept = ["content-type", "etag"]
        if self.hub.head_digest or self.command == "GET":
            kept.append("docker-content-digest")
        headers = {k: v for k, v in backend.headers.items() if k.lower() in kept}
        headers.update(self.hub.rate_headers(source))
        self.send_response(backend.status_code)
        for key, value in headers.items():
            self.send_header(key, value)
        length = (
            len(backend.content)
            if self.command == "GET"
            else int(backend.headers.get("content-length", "0"))
        )
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(backend.content)

    def referrers(self, match: re.Match[str], _source: str, _query: Any) -> None:
        if self.hub.referrers_answer == "406":  # Artifactory
            return self.error(406, "UNSUPPORTED", "not acceptable")
        if self.hub.referrers_answer == "500":
            return self.error(500, "UNKNOWN", "internal error")
        if self.hub.referrers_answer == "html":  # a front page where the API is not
            return self.reply(200, b"<html>welcome</html>", {"Content-Type": "text/html"})
        if not self.hub.referrers_api:
            return self.error(404, "NOT_FOUND", "no such endpoint")
        tag = match["digest"].replace(":", "-")
        backend = self.hub.backend.get(
            f"/v2/{match['name']}/manifests/{tag}", headers={"Accept": OCI_INDEX}
        )
        manifests = backend.json().get("manifests", []) if backend.status_code == 200 else []
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        self.reply(200, body.encode(), {"Content-Type": OCI_INDEX})

    def blob(self, match: re.Match[str], _source: str, _query: Any) -> None:
        with self.hub._lock:
            self.hub.counters.blob_redirects += 1
        signature = secrets.token_hex(16)
        with self.hub._lock:
            self.hub.counters.cdn_signatures.append(signature)
        location = (
            f"{self.hub.cdn_url}/cdn/{quote(match['name'])}/{match['digest']}"
            f"?expires={int(time.time()) + 600}&signature={signature}"
        )
        self.reply(307, b"", {"Location": location})

    def tags(self, match: re.Match[str], _source: str, query: dict[str, list[str]]) -> None:
        backend = self.hub.backend.get(f"/v2/{match['name']}/tags/list")
        if backend.status_code != 200:
            return self.reply(
                backend.status_code, backend.content, {"Content-Type": "application/json"}
            )
        tags = sorted(backend.json().get("tags") or [])
        size = min(int(query.get("n", ["100"])[0]), 100)  # Docker Hub pages hold 100 at most
        last = query.get("last", [None])[0]
        start = tags.index(last) + 1 if last in tags else 0
        page = tags[start : start + size]
        headers = {"Content-Type": "application/json"}
        if start + size < len(tags):
            headers["Link"] = (
                f'</v2/{match["name"]}/tags/list?last={quote(page[-1])}&n={size}>; rel="next"'
            )
        body = json.dumps({"name": match["name"], "tags": page}).encode()
        self.reply(200, body, headers)


def _expand_scope(scope: str) -> list[str]:
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return [f"{kind}:{name}:{action}" for action in actions.split(",") if action]


class _CdnHandler(_Handler):
    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        if "Authorization" in self.headers:
            with self.hub._lock:
                self.hub.counters.cdn_auth_rejections += 1
            return self.reply(
                400,
                b"<Error>Only one auth mechanism allowed</Error>",
                {"Content-Type": "application/xml"},
            )
        match = _CDN_RE.match(parsed.path)
        if not match:
            return self.reply(404)
        signature = parse_qs(parsed.query).get("signature", [""])[0]
        with self.hub._lock:
            self.hub.cdn_ranges.append(self.headers.get("Range", ""))
            used = signature in self.hub.counters.cdn_used_signatures
            self.hub.counters.cdn_used_signatures.add(signature)
        if self.hub.single_use_urls and used:
            return self.reply(403, b"<Error><Code>AccessDenied</Code>Request has expired</Error>")
        with self.hub.backend.stream("GET", f"/v2/{match['name']}/blobs/{match['digest']}") as r:
            if r.status_code != 200:
                r.read()
                return self.reply(r.status_code, r.content)
            if self.hub.gzip_label == "label":
                return self.reply(200, r.read(), {"Content-Encoding": "gzip"})
            if self.hub.gzip_label == "always":
                return self.reply(200, gzip.compress(r.read()), {"Content-Encoding": "gzip"})
            if self.hub.compress_when_asked and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(r.read())
                with self.hub._lock:
                    self.hub.counters.compressed_blobs += 1
                return self.reply(200, body, {"Content-Encoding": "gzip"})
            self.stream_blob(match["digest"], r)

    def stream_blob(self, digest: str, r: httpx.Response) -> None:
        size = int(r.headers["content-length"])
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(wanted[1]) if wanted and not self.hub.cdn_ignores_range else 0
        if wanted and not self.hub.cdn_ignores_range:
            first = start if self.hub.cdn_range_offset is None else self.hub.cdn_range_offset
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        flip = digest in self.hub.corrupt
        with self.hub._lock:
            cut = self.hub.cut_next_blobs > 0
            self.hub.cut_next_blobs -= cut
        budget = size // 2 if cut else self.hub.cut_every
        skip = start
        for chunk in r.iter_raw(256 * 1024):
            dropped = min(skip, len(chunk))
            skip -= dropped
            chunk = chunk[dropped:]
            if not chunk:
                continue
            if flip:
                chunk, flip = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
            if budget is not None:
                chunk, budget = chunk[:budget], budget - len(chunk[:budget])
            self.wfile.write(chunk)
            with self.hub._lock:
                self.hub.cdn_bytes[digest] = self.hub.cdn_bytes.get(digest, 0) + len(chunk)
            if self.hub.cdn_mib_per_second:
                time.sleep(len(chunk) / (self.hub.cdn_mib_per_second * 2**20))
            if budget == 0:
                self.close_connection = True
                return
