"""Secrets never reach a log line."""

import json
import logging

import structlog

from mirror.log import setup_logging


def test_secret_keys_and_auth_headers_are_redacted(capsys):
    setup_logging("json")
    structlog.get_logger("t").info(
        "request",
        password="hunter2",
        headers={"Authorization": "Bearer abc.def", "Accept": "x"},
        detail="sent Basic dXNlcjpwYXNz to the realm",
    )
    logging.getLogger("httpx").warning("retry with Bearer zzz-token")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    text = json.dumps(lines)
    for secret in ("hunter2", "abc.def", "dXNlcjpwYXNz", "zzz-token"):
        assert secret not in text
    assert lines[0]["headers"]["Accept"] == "x"
    assert lines[0]["detail"] == "sent Basic [REDACTED] to the realm"
