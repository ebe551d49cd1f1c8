"""Bodies mirror never asked for: a redirect's, a challenged 401's, an interim answer's.

httpx reads such a body whole before it follows the redirect or retries with a token, so
one hostile answer of a few hundred MiB would be held in memory, however small the limits
on the bodies mirror does read. This response hook, installed on every registry client,
swaps such a body for one that yields at most UNASKED_BODY_BYTES under the current
deadline, then stops: the rest is never read, and the connection it arrived on is closed
rather than reused (an unread rest must not become the next answer).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from mirror.oci.limits import ERROR_BODY_BYTES, check_deadline

__all__ = ["UNASKED_BODY_BYTES", "bound_unasked_body"]

# As much as an error body mirror reads: a final 401 keeps its message.
UNASKED_BODY_BYTES = ERROR_BODY_BYTES


class _Bounded(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        left = UNASKED_BODY_BYTES
        for chunk in self._stream:
            check_deadline()
            if len(chunk) >= left:
                if left:
                    yield chunk[:left]
                return  # the rest stays unread; close() drops the connection
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()


def bound_unasked_body(response: httpx.Response) -> None:
    """A response hook: bound the body of a 1xx, a redirect or a 401 before httpx reads it."""
    status = response.status_code
    if status < 200 or status == 401 or response.has_redirect_location:
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Bounded(response.stream)
