"""Logging: structlog for mirror and for the libraries under it, with secrets redacted.

`console` is for a person at a terminal (stderr, so stdout stays the per-image lines);
`json` is one object per line on stdout, for CloudWatch and other collectors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from mirror.files import mute_stdout, stdout_gone
from mirror.secrets import redact
from mirror.service.runs import LogFormat, set_log_format

__all__ = ["setup_logging"]


class _LateStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout or sys.stderr is when a record is emitted, so a
    library thread that logs late never writes to a stream someone has since closed."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    @property
    def stream(self) -> Any:
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """A reader that closed stdout (`mirror sync --log-format json | head`) stops the
        log there, not the pass: no "Logging error" traceback either."""
        if self._name == "stdout" and stdout_gone():
            return
        try:
            super().emit(record)
        except BrokenPipeError:
            mute_stdout()

    def handleError(self, record: logging.LogRecord) -> None:
        if sys.exc_info()[0] is BrokenPipeError:
            mute_stdout()
            return
        super().handleError(record)


# Libraries whose DEBUG output is wire traffic: request and response bodies (botocore
# prints GetAuthorizationToken's token and GetSecretValue's SecretString there), or every
# socket event (httpcore). Off unless --log-wire asks, and redacted even then.
WIRE_LOGGERS = ("httpcore", "botocore", "boto3", "urllib3", "s3transfer")


def _only_mirror_below_warning(record: logging.LogRecord) -> bool:
    """Libraries say only what matters (WARNING and up) unless -v: botocore's "Found
    credentials in environment variables" is not mirror's news. A filter on the handler,
    because a library may set its own logger's level (werkzeug does)."""
    return record.levelno >= logging.WARNING or record.name.partition(".")[0] == "mirror"


def setup_logging(fmt: LogFormat = "console", verbose: int = 0, *, wire: bool = False) -> None:
    """`verbose`: 0 INFO, 1+ DEBUG for mirror and one INFO line per HTTP request (httpx);
    `wire` adds the libraries' wire logs. Every line, mirror's or a library's, passes
    through `redact`."""
    level = logging.DEBUG if verbose else logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # a traceback is text, so it is redacted too
        redact,
    ]
    if fmt == "json":
        renderer: Any = structlog.processors.JSONRenderer()
        stream = sys.stdout
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        stream = sys.stderr
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    handler = _LateStreamHandler("stdout" if stream is sys.stdout else "stderr")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    if not verbose:
        handler.addFilter(_only_mirror_below_warning)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if verbose else logging.WARNING)
    logging.getLogger("mirror").setLevel(level)
    # In a terminal the CLI prints a line per image and a summary on stdout; the log need
    # not repeat them.
    quiet_events = fmt == "console" and not verbose
    for machine in ("mirror.images", "mirror.passes"):
        logging.getLogger(machine).setLevel(logging.CRITICAL if quiet_events else logging.NOTSET)
    # httpx logs every request at INFO (URL query strings are redacted): for -v only.
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)
    library_level = logging.INFO if verbose else logging.WARNING
    for noisy in WIRE_LOGGERS:  # their DEBUG is wire traffic: --log-wire only
        logging.getLogger(noisy).setLevel(logging.DEBUG if wire else library_level)
    set_log_format(fmt)
