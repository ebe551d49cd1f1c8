"""`mirror health`, the ECS container health check, in the standard library alone.

ECS runs it every 30 s with a 5 s timeout, inside a task that may be busy copying.
Importing the whole program (httpx, boto3, pydantic, rich) cost about a second of CPU,
enough for three checks in a row to time out and ECS to replace a healthy task in the
middle of a copy. So the daemon writes where its health server listens to a state file,
and this module reads it and asks `/healthz` over a plain socket. Anything it is not sure
of (no state file, an option it does not know) goes to the full command line instead.
"""

from __future__ import annotations

import json
import os
import socket
import time

__all__ = ["ask", "fast_health", "read_state", "state_path", "write_state"]

STATE_ENV = "MIRROR_STATE_FILE"
MAX_STATE_BYTES = 4096  # the file is a few dozen bytes; anything larger is not ours
TIMEOUT_SECONDS = 3.0  # under ECS's 5 s health-check timeout
MAX_BODY_BYTES = 64 * 1024
# A daemon listening on every address is asked on loopback.
_ANY = {"0.0.0.0", "::", ""}


def state_path() -> str:
    """$MIRROR_STATE_FILE, else one file per user in $TMPDIR (or /tmp)."""
    given = os.environ.get(STATE_ENV)
    if given:
        return given
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"mirror-daemon-{os.getuid()}.json")


def write_state(address: str, port: int) -> str:
    """The daemon, once its health server listens: where to ask. Returns the path."""
    from pathlib import Path

    from mirror.files import atomic_write  # the daemon's side may import the rest

    path = state_path()
    host = "127.0.0.1" if address in _ANY else address
    atomic_write(Path(path), json.dumps({"host": host, "port": port, "pid": os.getpid()}))
    return path


def read_state() -> tuple[str, int] | None:
    """(host, port) from the state file; None when there is none or it is not one of
    ours (too large, not JSON, a port out of range)."""
    try:
        with open(state_path(), "rb") as handle:
            raw = handle.read(MAX_STATE_BYTES + 1)
        state = json.loads(raw) if len(raw) <= MAX_STATE_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    host, port = state.get("host"), state.get("port")
    if not isinstance(host, str) or not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    return host, port


def ask(host: str, port: int, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(live, what the daemon said): /healthz answered 200 within `timeout` in all, or
    why not. A plain socket: http.client alone would double what the check costs."""
    deadline = time.monotonic() + timeout
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    received = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(request.encode("ascii"))
            while len(received) <= MAX_BODY_BYTES:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
    except OSError as exc:
        return False, f"no daemon answering on {host}:{port} ({type(exc).__name__})"
    head, _, body = received.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ")
    live = len(status) > 1 and status[0].startswith(b"HTTP/") and status[1] == b"200"
    return live, body[:MAX_BODY_BYTES].decode("utf-8", "replace")


def _port_option(args: list[str]) -> tuple[bool, int | None]:
    """(understood, the port `health --port N` names or None without one)."""
    if not args:
        return True, None
    if len(args) == 2 and args[0] == "--port":
        value = args[1]
    elif len(args) == 1 and args[0].startswith("--port="):
        value = args[0].removeprefix("--port=")
    else:
        return False, None
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        return False, None  # the full command line names what is wrong with it
    return True, int(value)


def fast_health(argv: list[str]) -> int | None:
    """The exit code of `mirror health [--port N]`, or None when the full command line
    must answer (another command, other options, no state file and no port)."""
    if argv[:1] != ["health"]:
        return None
    understood, port = _port_option(argv[1:])
    if not understood:
        return None
    host = "127.0.0.1"
    if port is None:
        state = read_state()
        if state is None:
            return None  # no daemon wrote one: the port comes from a local config
        host, port = state
    live, detail = ask(host, port)
    print(detail.strip())
    return 0 if live else 1
