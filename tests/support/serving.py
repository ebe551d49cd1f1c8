"""Test servers in a background thread (the Docker-Hub-like front, the ECR front, the
hostile registry), stopped within a few milliseconds.

`serve_forever` looks for `shutdown()` every `poll_interval`, 0.5 s by default: with a
front or two in most end-to-end tests, the default cost the suite about a minute and a
half of teardowns.
"""

from __future__ import annotations

import socketserver
import threading

POLL_SECONDS = 0.02


def start(server: socketserver.BaseServer) -> None:
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
    ).start()


def stop(server: socketserver.BaseServer) -> None:
    server.shutdown()
    server.server_close()
