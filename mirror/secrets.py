"""Every secret value this process has obtained, so that redaction masks it anywhere.

Key names (`password=`, `Authorization`) catch most leaks; this catches the rest: a token
inside a library's debug dump of a response body, a password inside a URL, a Secrets
Manager string echoed by botocore. Whoever obtains a secret calls `remember`; log
redaction (mirror.console.log) and report writing mask every remembered value as a substring.
"""

from __future__ import annotations

import base64
import threading

__all__ = ["REDACTED", "mask", "remember", "remember_credentials"]

REDACTED = "[REDACTED]"
# Shorter values (a username such as "AWS") would mask ordinary words.
MIN_LENGTH = 6

_known: set[str] = set()
_lock = threading.Lock()
_ordered: list[str] = []  # longest first, so a secret inside a longer one is masked whole


def remember(*values: str | None) -> None:
    """Mask these from now on wherever they appear."""
    with _lock:
        added = False
        for value in values:
            if value and len(value) >= MIN_LENGTH and value not in _known:
                _known.add(value)
                added = True
        if added:
            _ordered[:] = sorted(_known, key=len, reverse=True)


def remember_credentials(username: str, password: str) -> None:
    """A password, and the Basic header value it travels in."""
    pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    remember(password, pair)


def mask(text: str) -> str:
    with _lock:
        secrets = list(_ordered)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
