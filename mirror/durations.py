"""Durations as people write them in configs and flags: 30s, 10m, 6h, 1d, or seconds."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError with the accepted forms otherwise."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: write e.g. 30s, 10m, 6h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
