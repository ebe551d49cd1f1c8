"""A pass's lines, found together and written as the console chose.

Every line a pass logs carries its `run_id` (the threads it starts copy the context), so
one pass's lines can be found together in CloudWatch Logs Insights. Whether lines are
JSON is decided where logging is set up (mirror/console/log.py); the EMF metrics, which
only a JSON log carries, follow that choice.
"""

from __future__ import annotations

import uuid
from typing import Literal

import structlog

__all__ = ["LogFormat", "bind_run", "log_format", "new_run_id", "set_log_format"]

LogFormat = Literal["console", "json"]
_format: list[LogFormat] = ["console"]


def log_format() -> LogFormat:
    """What logging was set up with: JSON lines (for collectors) or console text."""
    return _format[0]


def set_log_format(fmt: LogFormat) -> None:
    _format[0] = fmt


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def bind_run(run_id: str) -> None:
    """Every line logged from here on in this context (and the threads that copy it) carries
    `run_id`."""
    structlog.contextvars.bind_contextvars(run_id=run_id)
