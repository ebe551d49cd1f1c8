"""A hostile registry front: a real registry behind it, with switchable lies.

What an attacker who controls an upstream (or a proxy or CDN in front of one) can send:
crafted tag lists, a HEAD that announces another digest, index children with malformed
digests, oversized or gzip-bombed manifests, bodies that drip, endless pagination, `Link`
pages on another origin, error messages with newlines and ANSI escapes. Everything not
switched on is proxied to the backend unchanged, so the well-behaved images of the same
run are real. `Recorder` stands in for the attacker's other hosts (a CDN, a token realm,
another origin) and records every request it gets.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import socket
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.support import serving
from tests.support.images import ACCEPT, digest_of
from tests.support.registry import free_port

__all__ = [
    "BEARER_TOKEN",
    "BackgroundServer",
    "Handler",
    "HostileFront",
    "Recorder",
    "Served",
    "gzip_bomb",
]

BEARER_TOKEN = "hostile-token"  # what a Recorder realm hands out: {"token": ...}
_MANIFEST_RE = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip body that inflates to `inflated_bytes` zeros, built without holding them."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as packer:
        chunk = bytes(2**20)
        for _ in range(inflated_bytes // len(chunk)):
            packer.write(chunk)
    return out.getvalue()


@dataclass
class Served:
    """A canned answer: body, status and headers."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class BackgroundServer:
    """A server on 127.0.0.1 that runs for the duration of a `with` block."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = _Server(("127.0.0.1", self.port), handler)

    def __enter__(self) -> Any:
        serving.start(self._server)
        return self

    def __exit__(self, *_: object) -> None:
        serving.stop(self._server)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_: Any) -> None:
        pass

    def start(self, served: Served) -> None:
        """Status and headers; Content-Length is the body's unless `served` sets one."""
        self.send_response(served.status)
        headers = {k.lower(): v for k, v in served.headers.items()}
        headers.setdefault("content-length", str(len(served.body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def reply(self, served: Served) -> None:
        self.start(served)
        if self.command != "HEAD":
            self.wfile.write(served.body)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on a drip: as it should


class Recorder(BackgroundServer):
    """An attacker's other host: answers `answer` to everything, records what it got."""

    def __init__(self, answer: Served | None = None) -> None:
        self.answer = answer or Served(b"{}", {"Content-Type": "application/json"})
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Recording(Handler):
            def do_GET(self) -> None:
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.reply(recorder.answer)

            do_HEAD = do_GET
            do_POST = do_GET
            do_PUT = do_GET

        super().__init__(Recording)


class HostileFront(BackgroundServer):
    """`with HostileFront(backend_url) as front:`; point a registry's `url` at front.url.

    Keys are `name:reference` for manifests and `name` for tag lists."""

    def __init__(self, backend_url: str, *, basic: tuple[str, str] | None = None) -> None:
        self.backend = httpx.Client(base_url=backend_url, timeout=60)
        self.basic = basic  # require these Basic credentials on every /v2/ request
        self.bearer_realm: str | None = None  # or a Bearer token from this realm (a Recorder)
        self.extra_tags: dict[str, list[Any]] = {}  # appended to the backend's tag list
        self.tag_bodies: dict[str, bytes] = {}  # served instead of the tag list
        self.endless: set[str] = set()  # tag lists whose every page links to a new one
        self.next_page: dict[str, str] = {}  # tag lists whose first page links here
        self.manifests: dict[str, Served] = {}  # served instead of the backend's manifest
        self.head_digest: dict[str, str] = {}  # Docker-Content-Digest a HEAD announces
        self.get_errors: dict[str, Served] = {}  # by name: answers to its manifest GETs
        self.drip: set[str] = set()  # names whose manifest GETs and tag lists drip
        self.drip_seconds = 0.5
        # A first answer mirror never asked for, with a body of this many bytes: a 307 to
        # the real manifest (by name) or blob (every blob), or the 401 of `basic`.
        self.redirect_bodies: dict[str, int] = {}
        self.blob_redirect_body = 0
        self.challenge_body = 0
        # Blobs of these names sent chunked: their first 20 bytes one a chunk, drip_seconds
        # apart, then the rest at once.
        self.chunked_blob_drip: set[str] = set()
        self.blob_redirect_to: str | None = None  # every blob GET: a 307 to this URL
        self.paths: list[str] = []  # every request path (undecoded), in order
        self.calls: list[tuple[str, str]] = []  # (method, path) of each
        front = self

        class Fronting(Handler):
            def do_GET(self) -> None:
                front.paths.append(self.path)
                front.calls.append((self.command, self.path))
                front.route(self)

            do_HEAD = do_GET

        super().__init__(Fronting)

    def __exit__(self, *_: object) -> None:
        super().__exit__()
        self.backend.close()

    def serve_manifest(self, key: str, body: bytes, media_type: str, **headers: str) -> str:
        """Serve `body` for manifest `key` (`name:tag`), and by its real digest too."""
        digest = digest_of(body)
        served = Served(
            body, {"Content-Type": media_type, "Docker-Content-Digest": digest, **headers}
        )
        name = key.partition(":")[0]
        self.manifests[key] = self.manifests[f"{name}:{digest}"] = served
        return digest

    def _authorized(self, handler: Handler) -> bool:
        if self.bearer_realm is not None:  # HEADs pass: the first GET meets the challenge
            token = handler.headers.get("Authorization") == f"Bearer {BEARER_TOKEN}"
            return token or handler.command == "HEAD"
        if self.basic is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
        return handler.headers.get("Authorization") == expected

    def _challenge(self) -> dict[str, str]:
        if self.bearer_realm is not None:
            return {"WWW-Authenticate": f'Bearer realm="{self.bearer_realm}",service="hostile"'}
        return {"WWW-Authenticate": 'Basic realm="hostile"'}

    def route(self, handler: Handler) -> None:
        parsed = urlparse(handler.path)
        if not self._authorized(handler):
            return self._huge(
                handler, Served(b"", self._challenge(), status=401), self.challenge_body
            )
        redirected = "redirected" in parse_qs(parsed.query)
        manifest = _MANIFEST_RE.match(parsed.path)
        name = manifest["name"] if manifest else ""
        blob = "/blobs/sha256:" in parsed.path and handler.command == "GET"
        size = self.redirect_bodies.get(name, 0) or (self.blob_redirect_body if blob else 0)
        if blob and self.blob_redirect_to:
            return handler.reply(Served(b"", {"Location": self.blob_redirect_to}, status=307))
        if size and not redirected and handler.command == "GET":
            location = {"Location": f"{parsed.path}?redirected=1"}
            return self._huge(handler, Served(b"", location, status=307), size)
        if redirected:
            handler.path = parsed.path
        blob_of = parsed.path.partition("/blobs/")[0].removeprefix("/v2/")
        if blob and blob_of in self.chunked_blob_drip:
            return self._drip_chunked(handler, self.backend.get(parsed.path).content)
        if parsed.path == "/v2/":
            return handler.reply(Served(b"{}", {"Content-Type": "application/json"}))
        tags = _TAGS_RE.match(parsed.path)
        if tags:
            return self._tags(handler, tags["name"], parse_qs(parsed.query))
        manifest = _MANIFEST_RE.match(parsed.path)
        if manifest:
            return self._manifest(handler, f"{manifest['name']}:{manifest['ref']}", parsed.path)
        return self._proxy(handler, handler.path)

    def _drip_chunked(self, handler: Handler, body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for index in range(20):
                handler.wfile.write(b"1\r\n" + body[index : index + 1] + b"\r\n")
                handler.wfile.flush()
                time.sleep(self.drip_seconds)
            rest = body[20:]
            handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _huge(handler: Handler, served: Served, size: int) -> None:
        """`served` with a body of `size` zero bytes, written as fast as it is taken."""
        handler.start(Served(b"", {**served.headers, "Content-Length": str(size)}, served.status))
        if handler.command == "HEAD":
            return
        chunk = bytes(2**20)
        try:
            for start in range(0, size, len(chunk)):
                handler.wfile.write(chunk[: size - start])
        except OSError:
            handler.close_connection = True  # the client stopped reading: as it should

    def _send(self, handler: Handler, key: str, served: Served) -> None:
        if key.partition(":")[0] not in self.drip or handler.command == "HEAD":
            return handler.reply(served)
        handler.start(served)
        for index in range(len(served.body)):
            handler.wfile.write(served.body[index : index + 1])
            handler.wfile.flush()
            time.sleep(self.drip_seconds)

    def _tags(self, handler: Handler, name: str, query: dict[str, list[str]]) -> None:
        headers = {"Content-Type": "application/json"}
        if name in self.endless:
            page = int(query.get("page", ["0"])[0])
            headers["Link"] = f'</v2/{name}/tags/list?page={page + 1}>; rel="next"'
            return handler.reply(Served(json.dumps({"tags": [f"t{page}"]}).encode(), headers))
        if name in self.next_page and "last" not in query:
            headers["Link"] = f'<{self.next_page[name]}>; rel="next"'
        if name in self.tag_bodies:
            return self._send(handler, name, Served(self.tag_bodies[name], headers))
        backend = self.backend.get(f"/v2/{name}/tags/list")
        listed = (backend.json().get("tags") or []) if backend.status_code == 200 else []
        body = json.dumps({"name": name, "tags": listed + self.extra_tags.get(name, [])})
        self._send(handler, name, Served(body.encode(), headers))

    def _manifest(self, handler: Handler, key: str, path: str) -> None:
        name = key.partition(":")[0]
        if handler.command == "GET" and name in self.get_errors:
            return handler.reply(self.get_errors[name])
        served = self.manifests.get(key)
        if served is None:
            backend = self.backend.request(handler.command, path, headers={"Accept": ACCEPT})
            kept = ("content-type", "docker-content-digest", "content-length")
            served = Served(
                backend.content,
                {k: v for k, v in backend.headers.items() if k.lower() in kept},
                backend.status_code,
            )
        elif handler.command == "HEAD":
            length = str(len(served.body))
            served = Served(b"", {**served.headers, "Content-Length": length}, served.status)
        if key in self.head_digest and handler.command == "HEAD":
            served = Served(b"", {**served.headers, "Docker-Content-Digest": self.head_digest[key]})
        return self._send(handler, key, served)

    def _proxy(self, handler: Handler, path: str) -> None:
        with self.backend.stream(handler.command, path) as backend:
            body = backend.read()
            kept = ("content-type", "docker-content-digest", "location")
            handler.reply(
                Served(
                    body,
                    {k: v for k, v in backend.headers.items() if k.lower() in kept},
                    backend.status_code,
                )
            )
