"""The live progress display (rich, on stderr): a bar per image in flight with its bytes,
MiB/s and time left, an overall line, and one line per registry that waits for quota
("docker.io: 3 images wait 37 s for quota, max-wait left 9m 12s"). It is the
ProgressSink of mirror/engine/progress.py for a person at a terminal.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["LiveProgress"]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds} s"


class LiveProgress:
    """rich's Progress on stderr, updated from the copy threads (rich locks its own state)."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        images: int | None = None,
        redirect_stdout: bool = False,
    ) -> None:
        """`redirect_stdout`: when stdout is the same terminal, its lines are printed above
        the bars; when it is a file or a pipe, they go there untouched."""
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
            redirect_stdout=redirect_stdout,
        )
        self._lock = threading.Lock()
        self._images: dict[str, TaskID] = {}
        self._blobs: dict[tuple[str, str], int] = {}  # bytes seen per blob
        self._waits: dict[str, TaskID] = {}
        self._done = 0
        # Every blob started so far, all images together: its bar, rate and time left are
        # the pass's (a blob's size is known once its manifest is, so the total grows).
        self._overall = self._progress.add_task("images done: 0", total=0)
        self._total_images = images

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def _image(self, image: str) -> TaskID:
        task = self._images.get(image)
        if task is None:
            task = self._progress.add_task(image, total=0)
            self._images[image] = task
        return task

    def images_planned(self, count: int) -> None:
        """How many images the pass will copy, once the free checks have said."""
        with self._lock:
            self._total_images = count
            self._describe_overall()

    def blob_started(self, image: str, digest: str, size: int) -> None:
        """Again for a retried blob: its bytes so far are taken back, its size counted once."""
        with self._lock:
            task = self._image(image)
            before = self._blobs.get((image, digest))
            if before is None:
                for grown in (task, self._overall):
                    total = self._progress.tasks[self._index(grown)].total or 0
                    self._progress.update(grown, total=total + size)
            else:
                self._progress.advance(task, -before)
                self._progress.advance(self._overall, -before)
            self._blobs[(image, digest)] = 0
            self._progress.refresh()  # a new blob is drawn at once, however quick its copy

    def blob_advanced(self, image: str, digest: str, received: int) -> None:
        with self._lock:
            before = self._blobs.get((image, digest), 0)
            self._blobs[(image, digest)] = received
            self._progress.advance(self._image(image), received - before)
            self._progress.advance(self._overall, received - before)

    def quota_wait(self, registry: str, images: int, seconds: float, left: float) -> None:
        text = (
            f"{registry}: {images} image{'s' if images != 1 else ''} wait "
            f"{_duration(seconds)} for quota, max-wait left {_duration(left)}"
        )
        with self._lock:
            task = self._waits.get(registry)
            if task is None:
                self._waits[registry] = self._progress.add_task(text, total=None, start=False)
            else:
                self._progress.update(task, description=text)
            self._progress.refresh()

    def image_done(self, image: str, action: str) -> None:
        with self._lock:
            task = self._images.pop(image, None)
            if task is not None:
                self._progress.remove_task(task)
            for registry, wait in list(self._waits.items()):
                if image.startswith(registry + "/"):  # its registry's window opened
                    self._progress.remove_task(wait)
                    del self._waits[registry]
            self._done += 1
            self._describe_overall()

    def _describe_overall(self) -> None:
        of = f" of {self._total_images}" if self._total_images else ""
        self._progress.update(self._overall, description=f"images done: {self._done}{of}")

    def _index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self._progress.tasks) if t.id == task)
