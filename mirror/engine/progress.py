"""What a pass is doing right now, for a person at a terminal.

The copy engine reports through a sink held in a context variable (so the image and blob
threads, which run in the pass's context, find it without being passed it): blob bytes as
they arrive, quota waits as the scheduler decides them, images as they finish. Without a
sink (JSON logs, a pipe, the daemon) every call is a no-op and nothing is drawn.

mirror/console/live.py draws it with rich; it is imported only when a display is wanted, so a
health check or a pipe never pays for rich.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

__all__ = ["ProgressSink", "active", "showing"]


class ProgressSink(Protocol):
    def images_planned(self, count: int) -> None: ...
    def blob_started(self, image: str, digest: str, size: int) -> None: ...
    def blob_advanced(self, image: str, digest: str, received: int) -> None: ...
    def quota_wait(self, registry: str, images: int, seconds: float, left: float) -> None: ...
    def image_done(self, image: str, action: str) -> None: ...


_sink: ContextVar[ProgressSink | None] = ContextVar("mirror_progress", default=None)


def active() -> ProgressSink | None:
    return _sink.get()


@contextlib.contextmanager
def showing(sink: ProgressSink) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
