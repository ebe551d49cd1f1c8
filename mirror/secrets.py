"""Secrets stay secret: every secret value this process has obtained, and the redaction
that masks them, and whatever looks like one, wherever text leaves the process.

Key names (`password=`, `Authorization`) catch most leaks; remembered values catch the
rest: a token inside a library's debug dump of a response body, a password inside a URL,
a Secrets Manager string echoed by botocore. Whoever obtains a secret calls `remember`;
log lines (`redact`, a structlog processor), reports and error messages (`scrub_text`,
`mask`) are scrubbed here.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import MutableMapping
from typing import Any

__all__ = ["REDACTED", "mask", "redact", "remember", "remember_credentials", "scrub_text"]

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


_SECRET_KEY_RE = re.compile(r"authorization|password|passwd|secret|token|credential", re.I)
_SECRET_VALUE_RE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
# A URL in text: its userinfo and query (presigned URLs carry X-Amz-Signature, sig=) go.
_URL_RE = re.compile(r"\b(https?://)(?:[^\s/?#@'\"<>]*@)?([^\s?#'\"<>]*)(\?[^\s#'\"<>]*)?", re.I)


def _url(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + ("?" + REDACTED if match.group(3) else "")


# A secret-named field in serialized text (a JSON body in a library's wire log, logged
# before mirror has seen the value): `"SecretString": "..."`, quotes escaped or not.
_SECRET_FIELD_RE = re.compile(
    r"((?:SecretString|SecretBinary|authorizationToken|accessToken|access_token|token|"
    r"password|secret)\\*[\"']?\s*[:=]\s*\\*[\"'])(.*?)(?=\\*[\"'])",
    re.I,
)


_SECRET_PAIR_RE = re.compile(
    r"\b((?:password|passwd|secret|token|access_token|signature|sig|"
    r"X-Amz-Signature|X-Amz-Security-Token|X-Amz-Credential)=)([^\s&'\",;]+)",
    re.I,
)


def scrub_text(text: str) -> str:
    """Known secrets, secret-named fields, auth header values, and URLs' userinfo and query,
    masked."""
    text = _SECRET_FIELD_RE.sub(lambda m: m.group(1) + REDACTED, mask(text))
    text = _SECRET_PAIR_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SECRET_VALUE_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _URL_RE.sub(_url, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY_RE.search(str(k)) else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes):  # a library's raw body
        return _scrub(str(value))
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
