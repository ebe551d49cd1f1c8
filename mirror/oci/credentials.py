"""A registry credential as data: a username and a password or access token.

Apart from the auth flow (oci/auth.py), which needs httpx: reading credentials from the
environment or a secret, to check a config, must not load an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Credentials"]


@dataclass(frozen=True)
class Credentials:
    """A username and a password or access token; the secret never shows in repr."""

    username: str
    password: str = field(repr=False)
