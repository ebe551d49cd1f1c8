"""Secrets never reach a log line."""

import json
import logging

import pytest
import structlog

from mirror.console.log import setup_logging
from mirror.secrets import remember, scrub_text
from mirror.service.runs import bind_run


def test_secret_keys_and_auth_headers_are_redacted(capsys):
    setup_logging("json")
    structlog.get_logger("mirror.t").info(
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


def test_a_remembered_secret_is_masked_anywhere_even_in_a_library_line(capsys):
    remember("s3cr3t-value-from-secrets-manager")
    setup_logging("json")
    logging.getLogger("botocore.parsers").warning(
        'Response body: b\'{"x": "prefix s3cr3t-value-from-secrets-manager suffix"}\''
    )
    assert "s3cr3t-value" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ('{"SecretString":"{\\"accessToken\\": \\"tok-123\\"}"}', "tok-123"),
        ('{"authorizationToken":"QVdTOmFiYw=="}', "QVdTOmFiYw=="),
        ("GET https://cdn.test/blob?X-Amz-Signature=abcd&X-Amz-Security-Token=efgh", "abcd"),
        ("GET https://cdn.test/blob?X-Amz-Signature=abcd&X-Amz-Security-Token=efgh", "efgh"),
        ("POST https://user:hunter2@hooks.test/events", "hunter2"),
        ("form body grant_type=password&password=hunter2", "hunter2"),
    ],
)
def test_secret_fields_urls_and_pairs_in_text_are_masked(text, leak):
    assert leak not in scrub_text(text)


def test_urls_keep_their_host_and_path_for_the_reader():
    assert (
        scrub_text("GET https://cdn.test/a/b?sig=x done")
        == "GET https://cdn.test/a/b?[REDACTED] done"
    )


def test_library_chatter_stays_out_of_mirrors_stream_unless_verbose(capsys):
    setup_logging("json")
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    logging.getLogger("werkzeug").info("127.0.0.1 - GET / 200")
    structlog.get_logger("mirror.sync").info("pass_started")
    logging.getLogger("botocore.credentials").warning("credentials expire soon")
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events == ["pass_started", "credentials expire soon"]

    setup_logging("json", verbose=1)
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    assert "Found credentials" in capsys.readouterr().out


def test_every_line_carries_the_run_id_even_from_a_worker_thread(capsys):
    from mirror.threads import ContextPool

    setup_logging("json")
    bind_run("run-1")
    with ContextPool(2) as pool:
        pool.submit(structlog.get_logger("mirror.copy").info, "blob_copied").result()
    structlog.get_logger("mirror.sync").info("pass_done")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["run_id"]) for line in lines] == [
        ("blob_copied", "run-1"),
        ("pass_done", "run-1"),
    ]
