"""The lean wire under blob copies: httpx's semantics on http.client's bytes."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from mirror.engine.blobs import response_chunks, verified_chunks
from mirror.errors import IntegrityError
from mirror.oci.wire import READINTO, WireTransport
from tests.support.registry import free_port

Serve = Callable[[socket.socket], None]


class RawServer:
    """One thread answering each accepted connection with `serve(conn)`."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Serve], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Serve) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def always(body: bytes) -> Serve:
    """A kept-alive connection that answers every request with `body`."""

    def keep_alive(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(answer(body))

    return keep_alive


def client(**settings: object) -> httpx.Client:
    return httpx.Client(transport=WireTransport(), **settings)  # type: ignore[arg-type]


def test_two_requests_share_one_kept_alive_connection(serve):
    server = serve(always(b"hello"))
    with client() as http:
        assert http.get(server.url + "/a").content == b"hello"
        assert http.get(server.url + "/b").content == b"hello"
    assert server.connections == 1


def test_a_body_of_known_length_is_read_as_it_arrives_not_when_the_buffer_fills(serve):
    def drip(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        time.sleep(1.0)
        conn.sendall(b"cdefghij")

    server = serve(drip)
    with client() as http, http.stream("GET", server.url) as response:
        readinto = response.extensions[READINTO]
        view = memoryview(bytearray(1 << 20))
        started = time.monotonic()
        assert readinto(view) == 2  # the caller can check its deadline now
        assert time.monotonic() - started < 0.5
        assert readinto(view) == 8 and bytes(view[:8]) == b"cdefghij"
        assert readinto(view) == 0


def test_a_refused_connection_is_httpx_connect_error_which_the_breaker_counts():
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{free_port()}/")


def test_silence_past_the_read_timeout_is_a_read_timeout(serve):
    def silent(conn: socket.socket) -> None:
        read_request(conn)
        time.sleep(3)

    server = serve(silent)
    with client(timeout=httpx.Timeout(5, read=0.5)) as http, pytest.raises(httpx.ReadTimeout):
        http.get(server.url)


def test_a_body_cut_short_is_a_transport_error_not_a_short_success(serve):
    def cut(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        conn.close()

    server = serve(cut)
    with client() as http, pytest.raises(httpx.TransportError):
        http.get(server.url).read()


def test_a_kept_alive_connection_the_server_closed_is_replaced_for_a_get(serve):
    def once(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer(b"first"))  # says nothing of closing, then closes
        conn.close()

    server = serve(once)
    with client() as http:
        assert http.get(server.url).content == b"first"
        time.sleep(0.1)
        assert http.get(server.url).content == b"first"
    assert server.connections == 2


def test_a_streamed_put_sends_memoryviews_as_they_are_with_its_content_length(serve):
    received: list[bytes] = []

    def record(conn: socket.socket) -> None:
        received.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    server = serve(record)
    data = memoryview(b"0123456789" * 1000)
    with client() as http:
        created = http.put(
            server.url + "/upload?digest=x",
            content=iter([data[:4000], data[4000:]]),
            headers={"Content-Length": str(len(data))},
        )
    assert created.status_code == 201
    (request,) = received
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"PUT /upload?digest=x HTTP/1.1\r\n")
    assert b"content-length: 10000" in head.lower() and b"transfer-encoding" not in head.lower()
    assert body == bytes(data)


def test_a_copy_over_the_wire_is_verified_in_place_and_holds_back_its_last_chunk(serve):
    data = bytes(range(256)) * 12_000  # about 3 MiB: three buffers' worth
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    server = serve(always(data))
    with client() as http:
        with http.stream("GET", server.url) as response:
            copied = b"".join(
                bytes(c)
                for c in verified_chunks(response_chunks(response, len(data)), good, len(data))
            )
        assert copied == data
        released = 0
        with http.stream("GET", server.url) as response, pytest.raises(IntegrityError):
            for chunk in verified_chunks(
                response_chunks(response, len(data)), "sha256:" + "0" * 64, len(data)
            ):
                assert isinstance(chunk, memoryview)
                released += len(chunk)
        assert 0 < released < len(data)


def test_a_small_blob_gets_small_buffers_and_an_overlong_body_still_fails(serve):
    data = b"x" * 100
    server = serve(always(data))
    with client() as http:
        with http.stream("GET", server.url) as response:
            chunks = list(
                verified_chunks(
                    response_chunks(response, 100),
                    "sha256:" + hashlib.sha256(data).hexdigest(),
                    100,
                )
            )
        assert [len(c) for c in chunks] == [100] and len(chunks[0].obj) == 100  # not 1 MiB
        with (
            http.stream("GET", server.url) as response,
            pytest.raises(IntegrityError, match="longer"),
        ):
            list(verified_chunks(response_chunks(response, 10), "sha256:" + "0" * 64, 10))


@pytest.mark.parametrize("when", ["with the answer", "after it"])
def test_bytes_after_an_answer_never_become_the_next_answer(serve, when):
    fake = answer(b"FAKE!")  # what an attacker slips in after a complete answer

    def smuggle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client drops the connection: it should
            while read_request(conn):
                if when == "with the answer":
                    conn.sendall(answer(b"real") + fake)
                else:
                    conn.sendall(answer(b"real"))
                    time.sleep(0.2)
                    conn.sendall(fake)

    server = serve(smuggle)
    with client() as http:
        assert http.get(server.url + "/a").content == b"real"
        time.sleep(0.4)  # the smuggled bytes have arrived
        assert http.get(server.url + "/b").content == b"real"  # not FAKE!
    assert server.connections == 2  # the first connection was not reused


def test_a_name_is_connected_to_only_at_an_address_that_was_judged(serve, monkeypatch):
    """The name resolves once; an instance-metadata address among its answers is never
    connected to, and a name with only forbidden addresses gets no connection at all."""
    import mirror.oci.wire as wire
    from mirror.errors import InvalidUpstreamDataError

    server = serve(always(b"hello"))
    tried: list[object] = []

    class Recording(socket.socket):
        def connect(self, address):  # type: ignore[override]
            tried.append(address)
            if str(address[0]).startswith("169.254."):
                raise AssertionError("a connection to the metadata service was attempted")
            return super().connect(address)

    def resolve(host, port, *_args, **_kwargs):
        answers = [("169.254.169.254", port)]
        if host == "mixed.test":
            answers.append(("127.0.0.1", port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in answers]

    monkeypatch.setattr(wire.socket, "socket", Recording)
    monkeypatch.setattr(wire.socket, "getaddrinfo", resolve)
    with client() as http:
        assert http.get(f"http://mixed.test:{server.port}/a").content == b"hello"
        with pytest.raises(InvalidUpstreamDataError) as refused:
            http.get(f"http://metadata-only.test:{server.port}/a")
    assert tried == [("127.0.0.1", server.port)]
    assert "instance-metadata" in str(refused.value) and "not connected" in str(refused.value)
