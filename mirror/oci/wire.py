"""The lean wire under every registry request: blobs, manifests, listings, tokens.

httpx over httpcore and h11 spends more CPU than the SHA-256 of the bytes themselves: it
reads 64 KiB at a time, runs h11's state machine per read, sets a socket timeout per read
and re-chunks through BytesIO. Measured on a 256 MiB blob from the local registry
(docs/benchmarks.md): 0.50 s of CPU through `iter_raw(256 KiB)` against 0.22 s through
`http.client`'s `readinto` into a 1 MiB buffer, of which SHA-256 alone is 0.18 s.

So this is an httpx transport on the standard library's `http.client`: httpx still owns
the request, its auth flow, redirects (Authorization stays with its origin), event hooks
and errors; only the bytes move here. A response offers `readinto` through
`response.extensions[READINTO]` so the copier can fill reusable buffers and hash them in
place, and a request body of memoryviews goes to `sendall` as it is. Timeouts are set once
per phase (connect, send, receive), not per read. Connections are kept alive per origin.

Being ours, it also holds the trust boundary at the socket: a name is resolved once and
connected to only at an address mirror.oci.addresses allows (so a name cannot pass the
check under one address and be used under another), and a connection is reused only when
nothing unread waits on it (so bytes after an answer never become the next answer).
Behind a proxy (HTTP(S)_PROXY/ALL_PROXY in the environment) httpx's own transport is used
instead, as it knows the proxy rules.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from mirror.errors import InvalidUpstreamDataError
from mirror.oci.addresses import judged_answers, refused_host

__all__ = ["READINTO", "CookielessClient", "WireTransport", "proxy_configured"]

READINTO = "mirror.readinto"  # response.extensions key: readinto(memoryview) -> int
_STREAM_CHUNK = 64 * 1024  # for readers that iterate (error bodies) instead of readinto
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class CookielessClient(httpx.Client):
    """httpx's Client without its cookie jar. Registries need no cookies, and httpx hands
    every response to http.cookiejar, re-parsing its headers as a mail message: a fifth of
    the CPU a no-op pass spends per request."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # httpx sets its own empty jar when it starts: there is none to set


def proxy_configured() -> bool:
    return any(os.environ.get(v) or os.environ.get(v.lower()) for v in _PROXY_VARIABLES)


class _Body(httpx.SyncByteStream):
    """A response body on a pooled connection: back to the pool once read to the end.

    Every call makes at most one socket read, whatever the framing: a body that drips
    returns what has come, so the caller's deadline is checked between reads instead of
    after a full buffer that may never come. A body of known length is read into the
    caller's buffer (`readinto1`); a chunked one through http.client's `read1`, which
    reads one chunk's bytes (or its header) a call.
    """

    def __init__(self, transport: WireTransport, key: _Key, conn: _Connection, response: Any):
        self._transport = transport
        self._key = key
        self._conn = conn
        self._response: http.client.HTTPResponse = response
        self._remaining: int | None = response.length  # None: chunked, or until close
        self._open = True

    def readinto(self, view: memoryview) -> int:
        try:
            if self._remaining is None:
                data = self._response.read1(len(view))
                view[: len(data)] = data
                return len(data)
            if not self._remaining:
                return 0
            assert self._response.fp is not None
            count = self._response.fp.readinto1(view[: self._remaining])
            if not count:
                raise httpx.RemoteProtocolError(
                    f"the connection closed with {self._remaining} bytes of the body unread"
                )
            self._remaining -= count
            return count
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc

    def __iter__(self) -> Iterator[bytes]:
        buffer = bytearray(_STREAM_CHUNK)
        view = memoryview(buffer)
        while True:
            count = self.readinto(view)
            if not count:
                return
            yield bytes(view[:count])

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        done = self._response.isclosed() or self._remaining == 0
        reusable = done and not self._response.will_close and self._nothing_unread()
        self._response.close()
        if reusable:
            self._transport.release(self._key, self._conn)
        else:
            self._conn.close()

    def _nothing_unread(self) -> bool:
        """Whether the connection holds no byte past this response, buffered or waiting
        on the socket: a byte sent after an answer's end would otherwise be read as the
        next request's answer. Looked at without waiting."""
        sock = self._conn.sock
        if sock is None:
            return False
        timeout = sock.gettimeout()
        try:
            sock.setblocking(False)
            fp = self._response.fp
            try:
                if fp is not None and fp.peek(1):  # already buffered, or just arrived
                    return False
            except ssl.SSLWantReadError:
                pass  # TLS: no record waiting
            return _quiet(self._conn)  # data, or the server closed it: not reusable
        except (OSError, ValueError):
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)


_Key = tuple[str, str, int]
_Connection = http.client.HTTPConnection


def _open_checked(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first address of `host` that mirror.oci.addresses allows;
    InvalidUpstreamDataError when it allows none (nothing is sent to any of them)."""
    reason = refused_host(host, resolve=False)  # metadata names, numeric spellings
    if reason is not None:
        raise InvalidUpstreamDataError(f"{host}: {reason}: not connected")
    allowed, refused = judged_answers(host, port)
    if not allowed:
        raise InvalidUpstreamDataError(f"{host} resolves to {refused}: not connected")
    last: OSError | None = None
    for family, kind, proto, address in allowed:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None
    raise last


def _quiet(conn: _Connection) -> bool:
    """Nothing waits to be read on the connection's socket (checked without waiting):
    neither decrypted TLS bytes nor anything in the socket's buffer."""
    if conn.sock is None:
        return False
    if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
        return False
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class WireTransport(httpx.BaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext | None = None, keep: int = 8) -> None:
        """`ssl_context`: the run's shared one; built on first HTTPS use if not given."""
        self._given_ssl = ssl_context
        self._keep = keep
        self._idle: dict[_Key, list[_Connection]] = {}
        self._lock = threading.Lock()

    # --- connections -----------------------------------------------------------------
    def _connect(self, key: _Key, timeout: float | None) -> _Connection:
        """A new connection to the address that was judged: the name is resolved once,
        every address is held to mirror.oci.addresses, and the socket goes to one that
        passed, so a name cannot resolve to one address when checked and another when
        used. TLS still verifies the certificate for the name."""
        scheme, host, port = key
        conn: _Connection
        if scheme == "https":
            if self._given_ssl is None:
                self._given_ssl = httpx.create_ssl_context()
            context = self._given_ssl
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            raw = _open_checked(host, port, timeout)
            if scheme == "https":
                conn.sock = context.wrap_socket(raw, server_hostname=host)
            else:
                conn.sock = raw
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _take(self, key: _Key) -> _Connection | None:
        """An idle connection to reuse: one with nothing to read. A byte that arrived
        while it was idle is no answer to a request not yet sent (or the server closed
        it): such a connection is closed, never used."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None or _quiet(conn):
                return conn
            conn.close()

    def release(self, key: _Key, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._keep:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    # --- one request -----------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        key: _Key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = request.stream
        replayable = isinstance(body, httpx.ByteStream)  # bytes: may be sent again
        conn = self._take(key)
        if conn is not None:
            try:
                return self._exchange(key, conn, request, timeouts)
            except httpx.TransportError:
                if not replayable:
                    raise
                # a kept-alive connection the server had closed: once more, on a new one
        conn = self._connect(key, timeouts.get("connect"))
        return self._exchange(key, conn, request, timeouts)

    def _exchange(
        self, key: _Key, conn: _Connection, request: httpx.Request, timeouts: dict[str, Any]
    ) -> httpx.Response:
        try:
            self._send(conn, request, timeouts.get("write"))
            assert conn.sock is not None
            conn.sock.settimeout(timeouts.get("read"))
            response = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(f"{request.method} {request.url.host}: timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:  # the body's source failed part-way (an upstream cut short)
            conn.close()  # half a request went out: the connection is good for nothing
            raise
        stream = _Body(self, key, conn, response)
        return httpx.Response(
            response.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()],
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", READINTO: stream.readinto},
        )

    def _send(self, conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
        url = request.url
        target = url.raw_path.decode("ascii")
        conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.raw:
            conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        conn.endheaders()
        assert conn.sock is not None
        conn.sock.settimeout(timeout)
        assert isinstance(request.stream, httpx.SyncByteStream)
        for part in request.stream:
            if not part:
                continue
            if chunked:
                conn.send(f"{len(part):x}\r\n".encode() + bytes(part) + b"\r\n")
            else:
                conn.sock.sendall(part)
        if chunked:
            conn.send(b"0\r\n\r\n")
