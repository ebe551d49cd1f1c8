"""Logging: structlog for mirror and for the libraries under it, with secrets redacted.

`console` is for a person at a terminal (stderr, so stdout stays the per-image lines);
`json` is one object per line on stdout, for CloudWatch and other collectors.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

__all__ = ["LogFormat", "redact", "setup_logging"]

LogFormat = Literal["console", "json"]

_SECRET_KEY_RE = re.compile(r"authorization|password|passwd|secret|token|credential", re.I)
_SECRET_VALUE_RE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
REDACTED = "[REDACTED]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUE_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY_RE.search(str(k)) else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop values of secret-looking keys, mask auth headers in text."""
    for key in list(event_dict):
        if _SECRET_KEY_RE.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


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


def setup_logging(fmt: LogFormat = "console", verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # In a terminal the CLI prints a line per image on stdout; the log need not repeat them.
    quiet_images = fmt == "console" and not verbose
    logging.getLogger("mirror.images").setLevel(
        logging.CRITICAL if quiet_images else logging.NOTSET
    )
    # httpx logs every request at INFO; keep that for -v only.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
