"""The daemon's /healthz and /metrics server, built to survive the network it listens on.

One asyncio loop on a thread of its own serves every connection: an idle or half-open
connection costs a socket, not a thread, and is closed when its request has not arrived
within REQUEST_SECONDS (a slow-loris client included); a request larger than
REQUEST_BYTES is refused. One address other than the container's own may hold at most
PER_ADDRESS connections, and OWN_RESERVED slots are kept for loopback, where the ECS
container health check (`mirror health`) comes from: so hundreds of idle connections,
from the network or not, can neither stop it from being answered nor exhaust the
descriptors a pass needs. It binds 127.0.0.1 unless `daemon.health_address` opens it to
scrapers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HealthServer", "Page", "is_loopback"]

REQUEST_SECONDS = 5.0
REQUEST_BYTES = 8 * 1024
MAX_CONNECTIONS = 900  # below the common 1,024 descriptor limit, with room for a pass
# The container's own health check connects from loopback: slots nobody else may take,
# so a scraper's network (health_address not loopback) cannot shut it out.
OWN_RESERVED = 20
OWN_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
# One other address may hold at most this share of the connections.
PER_ADDRESS = MAX_CONNECTIONS // 16


@dataclass(frozen=True)
class Page:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Page]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


class HealthServer:
    """`start()` binds and serves on a daemon thread; `stop()` closes every connection."""

    def __init__(self, address: str, port: int, routes: dict[str, Route]) -> None:
        self._address = address
        self._port = port
        self._routes = routes
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open = 0  # connections from other addresses than the container's own
        self._own = 0
        self._by_address: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="health", daemon=True)

    def start(self) -> None:
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, self._address, self._port, limit=REQUEST_BYTES)
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        server = self._server

        async def close() -> None:
            server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _admit(self, address: str) -> bool:
        """Count a new connection in, if it may stay (the event loop's thread only)."""
        if address in OWN_ADDRESSES:
            if self._own >= OWN_RESERVED and self._own + self._open >= MAX_CONNECTIONS:
                return False
            self._own += 1
            return True
        held = self._by_address.get(address, 0)
        if held >= PER_ADDRESS or self._open >= MAX_CONNECTIONS - OWN_RESERVED:
            return False
        self._by_address[address] = held + 1
        self._open += 1
        return True

    def _release(self, address: str) -> None:
        if address in OWN_ADDRESSES:
            self._own -= 1
            return
        self._open -= 1
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        if not self._admit(address):
            writer.close()
            return
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_SECONDS)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return  # idle, too slow, or too large: closed without an answer
            page = self._answer(head)
            reason = _REASONS.get(page.status, "")
            writer.write(
                f"HTTP/1.1 {page.status} {reason}\r\nContent-Type: {page.content_type}\r\n"
                f"Content-Length: {len(page.body)}\r\nConnection: close\r\n\r\n".encode()
                + page.body
            )
            await asyncio.wait_for(writer.drain(), REQUEST_SECONDS)
        except (OSError, TimeoutError):
            pass
        finally:
            self._release(address)
            writer.close()

    def _answer(self, head: bytes) -> Page:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        route = self._routes.get(path)
        if method != "GET":
            return Page(400, "text/plain", b"GET only\n")
        if route is None:
            return Page(404, "text/plain", b"not found\n")
        return route()
