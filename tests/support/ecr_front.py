"""A front that adds target behaviours (mostly ECR's data plane) to a real registry behind it.

- PutImage throttling: the next `throttle_puts` manifest PUTs answer 429 with ECR's
  `TOOMANYREQUESTS` error body.
- Immutable tags: with `immutable` set, a manifest PUT to a tag that already exists
  answers 400 `TAG_INVALID` with ECR's "cannot be overwritten because the repository is
  immutable" message.
- Referrers refused: with `refuse_subject` set, a manifest PUT whose body has a `subject`
  (an OCI 1.1 referrer) answers 405, as ECR has been reported to
  (aws/containers-roadmap#2783).
- Eventual consistency: with `unseen_once` set, the first PUT of each manifest answers
  400 `MANIFEST_BLOB_UNKNOWN` although its blobs were just uploaded, as a registry on
  eventually consistent storage does once (openshift/image-registry#220).
Everything else is forwarded unchanged (Authorization included), and `Location` headers
are rewritten to point back at the front.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support import serving
from tests.support.registry import free_port

__all__ = ["EcrFront"]

_MANIFEST_PUT_RE = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class EcrFront:
    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url
        self.backend = httpx.Client(base_url=backend_url, timeout=60)
        self.throttle_puts = 0
        self.throttled = 0
        self.immutable = False
        self.refuse_subject = False
        self.unseen_once = False
        self.unseen: list[str] = []  # manifest paths answered MANIFEST_BLOB_UNKNOWN
        self.calls: list[tuple[str, str, int]] = []  # method, path, the status answered
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.daemon_threads = True
        self._server.front = self  # type: ignore[attr-defined]

    def __enter__(self) -> EcrFront:
        serving.start(self._server)
        return self

    def __exit__(self, *_: object) -> None:
        serving.stop(self._server)
        self.backend.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    @property
    def front(self) -> EcrFront:
        return self.server.front  # type: ignore[attr-defined, no-any-return]

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.reply(status, body, {"Content-Type": "application/json"})

    def refused(self, body: bytes) -> bool:
        """Apply the ECR behaviours to a manifest PUT; True when answered here."""
        match = _MANIFEST_PUT_RE.match(self.path.split("?")[0])
        if self.command != "PUT" or not match:
            return False
        if self.front.refuse_subject and b'"subject"' in body:
            self.error(405, "UNSUPPORTED", "The operation is unsupported.")
            return True
        with self.front.lock:
            unseen = self.front.unseen_once and self.path not in self.front.unseen
            if unseen:
                self.front.unseen.append(self.path)
        if unseen:
            self.error(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
            return True
        with self.front.lock:
            throttle = self.front.throttle_puts > 0
            self.front.throttle_puts -= throttle
            self.front.throttled += throttle
        if throttle:
            self.error(429, "TOOMANYREQUESTS", "Rate exceeded")
            return True
        ref = match["ref"]
        immutable = self.front.immutable and not ref.startswith("sha256:")
        if immutable and self._backend_has(match["name"], ref):
            self.error(
                400,
                "TAG_INVALID",
                f"The image tag '{ref}' already exists in the '{match['name']}' "
                "repository and cannot be overwritten because the repository is immutable.",
            )
            return True
        return False

    def _backend_has(self, name: str, ref: str) -> bool:
        answer = self.front.backend.head(
            f"/v2/{name}/manifests/{ref}",
            headers={
                "Accept": self.headers.get("Content-Type", ""),
                "Authorization": self.headers.get("Authorization", ""),
            },
        )
        return answer.status_code == 200

    def forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.refused(body):
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        answer = self.front.backend.request(
            self.command, self.path, content=body or None, headers=headers
        )
        with self.front.lock:
            self.front.calls.append((self.command, self.path, answer.status_code))
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        if "location" in answer.headers:
            out["Location"] = answer.headers["location"].replace(
                self.front.backend_url, self.front.url
            )
            out.pop("location", None)
        length_out = answer.headers.get("content-length", "0")
        self.send_response(answer.status_code)
        for key, value in out.items():
            self.send_header(key, value)
        self.send_header(
            "Content-Length", length_out if self.command == "HEAD" else str(len(answer.content))
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward
