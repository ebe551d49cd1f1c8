"""registry.k8s.io as it behaves, in front of a real registry.

registry.k8s.io answers `GET /v2/` itself and 307-redirects every other `/v2/<name>/...`
request to a regional Artifact Registry backend,
`<region>-docker.pkg.dev/v2/k8s-artifacts-prod/images/<name>/...`, which serves
anonymously or challenges with its own Bearer realm, and sends blobs on to storage.
Sources: the registry.k8s.io documentation and the
kubernetes/registry.k8s.io project's own description of its redirects.

`K8sRegistry.url` is the registry.k8s.io stand-in; `.backend_url` the Artifact Registry
one. The backend paginates tag lists two a page with a relative `Link`, so a listing's
next pages are on the backend's origin, not the registry's.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import httpx

from tests.support.hostile import BackgroundServer, Handler, Served
from tests.support.images import ACCEPT

__all__ = ["K8sRegistry"]

PREFIX = "/v2/k8s-artifacts-prod/images/"
_BLOB_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[a-f0-9]{64})$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class _FrontHandler(Handler):
    """registry.k8s.io: /v2/ answered here, everything else redirected."""

    k8s: K8sRegistry

    def do_GET(self) -> None:
        self.k8s.record("front", self)
        path = urlparse(self.path)
        if path.path == "/v2/":
            return self.reply(Served(b"{}", {"Content-Type": "application/json"}))
        if not path.path.startswith("/v2/"):
            return self.reply(Served(b"", status=404))
        rest = path.path.removeprefix("/v2/")
        location = f"{self.k8s.backend_url}{PREFIX}{rest}" + (
            f"?{path.query}" if path.query else ""
        )
        return self.reply(Served(b"", {"Location": location}, 307))

    do_HEAD = do_GET


class _BackendHandler(Handler):
    """Artifact Registry: anonymous, or with its own token realm; blobs go to storage."""

    k8s: K8sRegistry

    def do_GET(self) -> None:
        self.k8s.record("backend", self)
        path = urlparse(self.path)
        if path.path == "/token":
            token = secrets.token_hex(8)
            self.k8s.tokens.add(token)
            return self.reply(Served(json.dumps({"token": token}).encode()))
        if path.path.startswith("/storage/"):
            return self._storage(path.path.removeprefix("/storage/"))
        if not path.path.startswith(PREFIX):
            return self.reply(Served(b"", status=404))
        if self.k8s.challenge and not self._authorized():
            scope = "repository:k8s-artifacts-prod/images:pull"
            realm = f'Bearer realm="{self.k8s.backend_url}/token",service="artifactregistry"'
            challenge = {"WWW-Authenticate": f'{realm},scope="{scope}"'}
            return self.reply(Served(b"{}", challenge, 401))
        inner = "/v2/" + path.path.removeprefix(PREFIX)
        blob = _BLOB_RE.match(inner)
        if blob:
            location = f"{self.k8s.backend_url}/storage/{blob['name']}@{blob['digest']}"
            return self.reply(Served(b"", {"Location": location}, 302))
        tags = _TAGS_RE.match(inner)
        if tags:
            return self._tags(tags["name"], parse_qs(path.query))
        backend = self.k8s.registry.request(self.command, inner, headers={"Accept": ACCEPT})
        kept = ("content-type", "docker-content-digest", "content-length")
        headers = {k: v for k, v in backend.headers.items() if k.lower() in kept}
        return self.reply(Served(backend.content, headers, backend.status_code))

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
        self.reply(Served(json.dumps({"name": name, "tags": page}).encode(), headers))

    def _storage(self, where: str) -> None:
        name, _, digest = where.partition("@")
        with self.k8s.registry.stream("GET", f"/v2/{name}/blobs/{digest}") as blob:
            body = blob.read()
        self.reply(Served(body, {"Content-Type": "application/octet-stream"}, blob.status_code))


class K8sRegistry:
    """`with K8sRegistry(backend_registry_url, challenge=...) as k8s:`."""

    def __init__(self, registry_url: str, *, challenge: bool = False) -> None:
        self.registry = httpx.Client(base_url=registry_url, timeout=60)
        self.challenge = challenge
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []  # who, method, path
        self._lock = threading.Lock()
        self._front = BackgroundServer(type("Front", (_FrontHandler,), {"k8s": self}))
        self._backend = BackgroundServer(type("Backend", (_BackendHandler,), {"k8s": self}))
        self.url, self.backend_url = self._front.url, self._backend.url

    def record(self, who: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((who, handler.command, handler.path, dict(handler.headers)))

    def __enter__(self) -> K8sRegistry:
        self._front.__enter__()
        self._backend.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self._front.__exit__()
        self._backend.__exit__()
        self.registry.close()
