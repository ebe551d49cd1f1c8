"""`mirror health` answers from the daemon's state file with the standard library alone,
and leaves anything it is not sure of to the full command line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirror.entry import main
from mirror.service.healthcheck import fast_health, read_state, write_state
from tests.support import serving

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def daemon():
    """A stand-in /healthz: `daemon.status` is what it answers."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            body = json.dumps({"status": "ok" if server.status == 200 else "unhealthy"})
            self.send_response(server.status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200
    serving.start(server)
    yield server
    serving.stop(server)


def test_the_state_file_says_where_to_ask_and_the_answer_is_the_exit_code(daemon, capsys):
    write_state("0.0.0.0", daemon.server_port)  # every address: asked on loopback

    assert read_state() == ("127.0.0.1", daemon.server_port)
    assert fast_health(["health"]) == 0
    assert '"status": "ok"' in capsys.readouterr().out
    daemon.status = 503
    assert fast_health(["health"]) == 1


def test_a_port_given_is_asked_whatever_the_state_file_says(daemon, health_state):
    health_state.write_text(json.dumps({"host": "127.0.0.1", "port": 1}))
    assert fast_health(["health", "--port", str(daemon.server_port)]) == 0
    assert fast_health(["health", f"--port={daemon.server_port}"]) == 0


def test_nothing_answering_is_exit_1_with_the_reason(health_state, capsys):
    health_state.write_text(json.dumps({"host": "127.0.0.1", "port": 1}))
    assert main(["health"]) == 1
    assert "no daemon answering on 127.0.0.1:1 (ConnectionRefusedError)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        json.dumps({"host": "127.0.0.1", "port": 70000}).encode(),
        json.dumps({"host": ["x"], "port": 80}).encode(),
        json.dumps({"host": "127.0.0.1", "port": 80, "pad": "x" * 5000}).encode(),
        json.dumps([1, 2]).encode(),
    ],
    ids=["garbage", "port out of range", "host not text", "too large", "not an object"],
)
def test_a_state_file_that_is_not_ours_sends_health_to_the_full_command_line(health_state, content):
    health_state.write_bytes(content)
    assert read_state() is None
    assert fast_health(["health"]) is None


@pytest.mark.parametrize(
    "argv",
    [["sync"], ["health", "--config", "x.yaml"], ["health", "--port", "0"], ["health", "-v"]],
)
def test_what_it_does_not_know_goes_to_the_full_command_line(argv, health_state):
    health_state.write_text(json.dumps({"host": "127.0.0.1", "port": 1}))
    assert fast_health(argv) is None


def test_the_health_check_imports_nothing_beyond_the_standard_library(daemon, health_state):
    write_state("127.0.0.1", daemon.server_port)
    probe = (
        "import sys\n"
        "from mirror.entry import main\n"
        "code = main(['health'])\n"
        "heavy = {'httpx', 'boto3', 'botocore', 'pydantic', 'structlog', 'rich', 'yaml',\n"
        "         'ruamel', 'tenacity', 'mirror.console.cli', 'mirror.config'}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_dripping_or_endless_answer_is_cut_at_the_timeout_and_the_size_bound():
    import socket
    import time

    from mirror.service.healthcheck import MAX_BODY_BYTES, ask

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(mode: str) -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            with contextlib.suppress(OSError):
                if mode == "drip":
                    for _ in range(100):
                        connection.sendall(b"x")
                        time.sleep(0.1)
                else:
                    connection.sendall(b"y" * (4 * MAX_BODY_BYTES))

    try:
        for mode in ("drip", "flood"):
            threading.Thread(target=serve, args=(mode,), daemon=True).start()
            started = time.monotonic()
            live, body = ask("127.0.0.1", port, timeout=0.5)
            assert time.monotonic() - started < 1.5, mode  # not the server's 10 s
            assert len(body) <= MAX_BODY_BYTES, mode
            assert not live or mode == "flood"
    finally:
        listener.close()
