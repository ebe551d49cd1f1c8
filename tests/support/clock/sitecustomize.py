"""Loaded at start by a mirror process under test (put this folder on PYTHONPATH): its
wall clock (time.time, datetime.now) runs the seconds in $MIRROR_TEST_CLOCK_OFFSET_FILE
away from the real one, and a test writes that file to step the clock while the process
runs, as an NTP correction or a VM resume does. The monotonic clock is left alone, as a
real step leaves it."""

import datetime
import os
import time

_FILE = os.environ.get("MIRROR_TEST_CLOCK_OFFSET_FILE")

if _FILE:
    _real_time = time.time

    def _offset() -> float:
        try:
            with open(_FILE) as handle:
                return float(handle.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def _stepped_time() -> float:
        return _real_time() + _offset()

    class _SteppedDateTime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime.datetime.fromtimestamp(_stepped_time(), tz)

    time.time = _stepped_time
    datetime.datetime = _SteppedDateTime  # type: ignore[misc]
