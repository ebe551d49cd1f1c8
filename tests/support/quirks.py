"""Registries as public trackers report them, each a small front in front of a real registry.

- `ThrottlingFront`: public.ecr.aws throttles anonymous clients to about one request a
  second (ten signed in) and answers more with `429 TOOMANYREQUESTS: Rate exceeded`,
  without rate-limit headers (aws/aws-lambda-web-adapter#429, a maintainer's answer).
- `HeadQuirkFront`: manifest HEADs that a registry cannot answer while GET works: Nexus
  answers 404 with an HTML page, others 405 (andrey-pohilko/registry-cli#14,
  distribution/distribution#1485; go-containerregistry's `remote.Head` falls back to GET).
- `ArtifactoryFront`: a remote repository under a repository key whose tag-list `Link`
  drops that key (RTFACT-18971; renovate works around it), so the next page is a 404.

Each proxies the rest to the registry behind it unchanged and counts what it served.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx

from tests.support.hostile import BackgroundServer, Handler, Served
from tests.support.images import ACCEPT

__all__ = ["ArtifactoryFront", "HeadQuirkFront", "ThrottlingFront"]

_MANIFEST_RE = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_KEPT = ("content-type", "docker-content-digest", "content-length", "content-range")


def _error(status: int, code: str, message: str, **headers: str) -> Served:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return Served(body, {"Content-Type": "application/json", **headers}, status)


class _Proxy(BackgroundServer):
    """GET and HEAD forwarded to `backend_url`; `answer(handler, path)` may answer first."""

    def __init__(self, backend_url: str) -> None:
        self.backend = httpx.Client(base_url=backend_url, timeout=60)
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self.lock = threading.Lock()
        front = self

        class Fronting(Handler):
            def do_GET(self) -> None:
                with front.lock:
                    front.calls.append((self.command, self.path))
                served = front.answer(self, urlparse(self.path))
                self.reply(served if served is not None else front.forward(self, self.path))

            do_HEAD = do_GET

        super().__init__(Fronting)

    def __exit__(self, *_: object) -> None:
        super().__exit__()
        self.backend.close()

    def answer(self, handler: Handler, path: Any) -> Served | None:
        return None

    def forward(self, handler: Handler, path: str) -> Served:
        headers = {"Accept": ACCEPT}
        if handler.headers.get("Range"):
            headers["Range"] = handler.headers["Range"]
        backend = self.backend.request(handler.command, path, headers=headers)
        kept = {k: v for k, v in backend.headers.items() if k.lower() in _KEPT}
        return Served(backend.content, kept, backend.status_code)

    def count(self, method: str, pattern: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and re.search(pattern, p))


class ThrottlingFront(_Proxy):
    """A token bucket of `per_second` requests (at most `burst` at once) for every client;
    past it `429 TOOMANYREQUESTS: Rate exceeded` with no rate-limit headers. `always`: every
    request is throttled (a registry that never lets up)."""

    def __init__(self, backend_url: str, *, per_second: float = 1.0, burst: int = 1) -> None:
        self.per_second = per_second
        self.burst = burst
        self.always = False
        self.tokens = float(burst)
        self.refilled = time.monotonic()
        self.served: list[float] = []  # when each request that was not throttled came
        self.throttled = 0
        super().__init__(backend_url)

    def answer(self, handler: Handler, path: Any) -> Served | None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.per_second)
            self.refilled = now
            if self.always or self.tokens < 1:
                self.throttled += 1
                return _error(429, "TOOMANYREQUESTS", "Rate exceeded")
            self.tokens -= 1
            self.served.append(now)
        return None

    def busiest_second(self) -> int:
        """The most requests served within any one second."""
        times = sorted(self.served)
        return max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)


class HeadQuirkFront(_Proxy):
    """Manifest HEADs answered `head` ("405", "501", or "nexus": a 404 HTML page) while
    GET works; `manifest_gets` counts the GETs that served a manifest."""

    def __init__(self, backend_url: str, *, head: str) -> None:
        self.head = head
        super().__init__(backend_url)

    def answer(self, handler: Handler, path: Any) -> Served | None:
        if handler.command != "HEAD" or not _MANIFEST_RE.match(path.path):
            return None
        if self.head == "nexus":
            page = b"<html><body><h1>404 - Sonatype Nexus Repository</h1></body></html>"
            return Served(page, {"Content-Type": "text/html"}, 404)
        return _error(int(self.head), "UNSUPPORTED", "The operation is unsupported.")

    @property
    def manifest_gets(self) -> int:
        return self.count("GET", r"/manifests/")


class ArtifactoryFront(_Proxy):
    """Repositories served under `/v2/<key>/<name>`; tag lists paginate `n` a page (two by
    default) with a `Link` that leaves the key out, and a path without the key is a 404."""

    def __init__(self, backend_url: str, *, key: str = "docker-remote") -> None:
        self.key = key
        super().__init__(backend_url)

    def answer(self, handler: Handler, path: Any) -> Served | None:
        prefix = f"/v2/{self.key}/"
        if path.path == "/v2/":
            return Served(b"{}", {"Content-Type": "application/json"})
        if not path.path.startswith(prefix):
            return _error(404, "NAME_UNKNOWN", "repository name not known to registry")
        inner = "/v2/" + path.path.removeprefix(prefix)
        tags = _TAGS_RE.match(inner)
        if tags is None:
            return self.forward(handler, inner + (f"?{path.query}" if path.query else ""))
        listed = sorted(self.backend.get(f"/v2/{tags['name']}/tags/list").json()["tags"] or [])
        query = parse_qs(path.query)
        size = int(query.get("n", ["2"])[0])
        size = min(size, 2)  # small pages, so a listing takes several
        last = query.get("last", [None])[0]
        start = listed.index(last) + 1 if last in listed else 0
        page = listed[start : start + size]
        headers = {"Content-Type": "application/json"}
        if start + size < len(listed):
            headers["Link"] = (
                f'</v2/{tags["name"]}/tags/list?last={quote(page[-1])}&n={size}>; rel="next"'
            )
        body = json.dumps({"name": f"{self.key}/{tags['name']}", "tags": page}).encode()
        return Served(body, headers)
