"""Blobs are verified while they stream; bad bytes never complete an upload."""

import hashlib

import httpx
import pytest

from mirror.blobs import verified_chunks
from mirror.errors import IntegrityError


def response_of(chunks: list[bytes]) -> httpx.Response:
    return httpx.Response(200, stream=httpx.ByteStream(b"".join(chunks)))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_good_bytes_pass_through_unchanged():
    data = b"x" * 600_000
    assert b"".join(verified_chunks(response_of([data]), digest(data), len(data))) == data


def test_a_digest_mismatch_is_raised_before_the_last_chunk_is_released():
    data = b"y" * 600_000  # more than one chunk
    released = []
    with pytest.raises(IntegrityError, match="expected 600000 bytes"):
        for chunk in verified_chunks(response_of([data]), digest(b"other"), len(data)):
            released.append(chunk)
    assert 0 < sum(map(len, released)) < len(data)


def test_more_bytes_than_declared_abort_at_once():
    data = b"z" * 100
    with pytest.raises(IntegrityError, match="longer than its declared 10 bytes"):
        list(verified_chunks(response_of([data]), digest(data), 10))


def test_fewer_bytes_than_declared_are_refused():
    data = b"z" * 100
    with pytest.raises(IntegrityError):
        list(verified_chunks(response_of([data]), digest(data), 101))
