"""registry.k8s.io as it behaves, in front of a real registry.

registry.k8s.io answers `GET /v2/` itself and 307-redirects every other `/v2/<name>/...`
request to a regional Artifact Registry backend,
`<region>-docker.pkg.dev/v2/k8s-artifacts-prod/images/<name>/...`, which serves
anonymously or challenges with its own Bearer realm, and sends blobs on to storage.
Sources: shared/LAB.md ("Real registries that tests cannot reach") and the
kubernetes/registry.k8s.io project's own description of its redirects.

`K8sRegistry.url` is the registry.k8s.io stand-in; `.backend_url` the Artifact Registry
one. The backend paginates tag lists two a page with a relative `Link`, so a listing's
next pages are on the backend's origin, not the registry's.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.support.images import ACCEPT
from tests.support.registry import free_port

__all__ = ["K8sRegistry"]

PREFIX = "/v2/k8s-artifacts-prod/images/"
_BLOB_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[a-f0-9]{64})$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_: Any) -> None:
        pass

    @property
    def k8s(self) -> K8sRegistry:
        return self.server.k8s  # type: ignore[attr-defined, no-any-return]

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        merged = {"Content-Length": str(len(body)), **(headers or {})}
        for key, value in merged.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _FrontHandler(_Handler):
    """registry.k8s.io: /v2/ answered here, everything else redirected."""

    def do_GET(self) -> None:
        self.k8s.record("front", self)
        path = urlparse(self.path)
        if path.path == "/v2/":
            return self.reply(200, b"{}", {"Content-Type": "application/json"})
        if not path.path.startswith("/v2/"):
            return self.reply(404)
        rest = path.path.removeprefix("/v2/")
        location = f"{self.k8s.backend_url}{PREFIX}{rest}" + (
            f"?{path.query}" if path.query else ""
        )
        return self.reply(307, b"", {"Location": location})

    do_HEAD = do_GET


class _BackendHandler(_Handler):
    """Artifact Registry: anonymous, or with its own token realm; blobs go to storage."""

    def do_GET(self) -> None:
        self.k8s.record("backend", self)
        path = urlparse(self.path)
        if path.path == "/token":
            token = secrets.token_hex(8)
            self.k8s.tokens.add(token)
            return self.reply(200, json.dumps({"token": token}).encode())
        if path.path.startswith("/storage/"):
            return self._storage(path.path.removeprefix("/storage/"))
        if not path.path.startswith(PREFIX):
            return self.reply(404)
        if self.k8s.challenge and not self._authorized():
            scope = "repository:k8s-artifacts-prod/images:pull"
            realm = f'Bearer realm="{self.k8s.backend_url}/token",service="artifactregistry"'
            return self.reply(401, b"{}", {"WWW-Authenticate": f'{realm},scope="{scope}"'})
        inner = "/v2/" + path.path.removeprefix(PREFIX)
        blob = _BLOB_RE.match(inner)
        if blob:
            location = f"{self.k8s.backend_url}/storage/{blob['name']}@{blob['digest']}"
            return self.reply(302, b"", {"Location": location})
        tags = _TAGS_RE.match(inner)
        if tags:
            return self._tags(tags["name"], parse_qs(path.query))
        backend = self.k8s.registry.request(self.command, inner, headers={"Accept": ACCEPT})
        kept = ("content-type", "docker-content-digest", "content-length")
        headers = {k: v for k, v in backend.headers.items() if k.lower() in kept}
        self.send_response(backend.status_code)
        for key, value in headers.items():
            self.send_header(key, value)
        if "content-length" not in {k.lower() for k in headers}:
            self.send_header("Content-Length", str(len(backend.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(backend.content)

    do_HEAD = do_GET

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.k8s.tokens

    def _tags(self, name: str, query: dict[str, list[str]]) -> None:
        listed = sorted(self.k8s.registry.get(f"/v2/{name}/tags/list").json().get("tags") or [])
        last = query.get("last", [None])[0]
        start = listed.index(last) + 1 if last in listed else 0
        page = listed[start : start + 2]
        headers = {"Content-Type": "application/json"}
        if start + 2 < len(listed):
            headers["Link"] = f'<{PREFIX}{name}/tags/list?last={page[-1]}>; rel="next"'
        self.reply(200, json.dumps({"name": name, "tags": page}).encode(), headers)

    def _storage(self, where: str) -> None:
        name, _, digest = where.partition("@")
        with self.k8s.registry.stream("GET", f"/v2/{name}/blobs/{digest}") as blob:
            body = blob.read()
        self.reply(blob.status_code, body, {"Content-Type": "application/octet-stream"})


class K8sRegistry:
    """`with K8sRegistry(backend_registry_url, challenge=...) as k8s:`."""

    def __init__(self, registry_url: str, *, challenge: bool = False) -> None:
        self.registry = httpx.Client(base_url=registry_url, timeout=60)
        self.challenge = challenge
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []  # who, method, path
        self._lock = threading.Lock()
        self._servers = []
        for name, handler in (("url", _FrontHandler), ("backend_url", _BackendHandler)):
            port = free_port()
            setattr(self, name, f"http://127.0.0.1:{port}")
            server = ThreadingHTTPServer(("127.0.0.1", port), handler)
            server.daemon_threads = True
            server.k8s = self  # type: ignore[attr-defined]
            self._servers.append(server)

    url: str
    backend_url: str

    def record(self, who: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((who, handler.command, handler.path, dict(handler.headers)))

    def __enter__(self) -> K8sRegistry:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self.registry.close()
