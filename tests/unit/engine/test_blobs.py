"""Blobs are verified while they stream; bad bytes never complete an upload."""

import contextlib
import hashlib
import os

import httpx
import pytest

from mirror.engine.blobs import response_chunks, upstream_chunks, verified_chunks
from mirror.errors import DownloadCutError, IntegrityError


def response_of(chunks: list[bytes]) -> object:
    size = sum(map(len, chunks))
    return response_chunks(httpx.Response(200, content=iter(chunks)), size)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_good_bytes_pass_through_unchanged():
    data = b"x" * 600_000
    assert b"".join(verified_chunks(response_of([data]), digest(data), len(data))) == data


def test_a_digest_mismatch_is_raised_before_the_last_chunk_is_released():
    data = b"y" * 600_000  # more than one chunk
    released = []
    with pytest.raises(IntegrityError, match="expected 600000 bytes"):
        halves = [data[:300_000], data[300_000:]]
        for chunk in verified_chunks(response_of(halves), digest(b"other"), len(data)):
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


def test_skipped_bytes_are_dropped_across_chunk_boundaries():
    data = bytes(range(256)) * 4000
    response = httpx.Response(200, stream=httpx.ByteStream(data))
    assert b"".join(response_chunks(response, len(data), skip=300_001)) == data[300_001:]


class CutStream(httpx.SyncByteStream):
    """A body that stops after `cut` bytes with the error a dropped connection raises."""

    def __init__(self, data: bytes, cut: int | None) -> None:
        self.data, self.cut = data, cut

    def __iter__(self):
        end = len(self.data) if self.cut is None else self.cut
        for start in range(0, end, 65536):
            yield self.data[start : min(end, start + 65536)]
        if self.cut is not None:
            raise httpx.RemoteProtocolError("peer closed connection")


class FakeUpstream:
    """Serves `data` from `offset`, honouring Range (206) unless `whole`; each connection
    is cut after `cuts[n]` bytes (None: not cut)."""

    registry = "registry.test"

    def __init__(self, data: bytes, cuts: list[int | None], whole: bool = False) -> None:
        self.data, self.cuts, self.whole = data, cuts, whole
        self.asked: list[tuple[int, object]] = []

    @contextlib.contextmanager
    def open_blob(self, repository, digest, *, offset=0, at=None):
        self.asked.append((offset, at))
        start = 0 if self.whole else offset
        status = 206 if offset and not self.whole else 200
        body = CutStream(self.data[start:], self.cuts.pop(0) if self.cuts else None)
        yield httpx.Response(
            status, stream=body, request=httpx.Request("GET", f"https://cdn.test/{len(self.asked)}")
        )


@pytest.fixture
def no_pause(monkeypatch):
    monkeypatch.setattr("mirror.engine.blobs.time.sleep", lambda _: None)


@pytest.mark.parametrize("whole", [False, True])
def test_a_cut_body_resumes_where_it_stopped_at_the_url_that_served_it(no_pause, whole):
    data = os.urandom(5 * 2**20)
    upstream = FakeUpstream(data, [2**21, 2**21 + 10], whole=whole)
    chunks = upstream_chunks(upstream, "a", digest(data), len(data))
    assert b"".join(verified_chunks(chunks, digest(data), len(data))) == data
    offsets = [offset for offset, _ in upstream.asked]
    # a 200 to a Range request: the whole blob again, read past what was copied
    assert offsets == [0, 2**21, 2**21 + (10 if whole else 2**21 + 10)]
    assert [str(at) for _, at in upstream.asked] == [
        "None",
        "https://cdn.test/1",
        "https://cdn.test/2",
    ]


def test_connections_that_bring_too_little_end_in_an_error_naming_the_upstream(no_pause):
    data = os.urandom(2_000_000)
    upstream = FakeUpstream(data, [100_000] * 10)
    with pytest.raises(DownloadCutError) as caught:
        b"".join(upstream_chunks(upstream, "a", digest(data), len(data)))
    assert str(caught.value).startswith(f"registry.test: blob {digest(data)}: the download")
    assert "at byte 400000 of 2000000 after 3 reconnects" in str(caught.value)
    assert len(upstream.asked) == 4


def test_a_failure_before_the_first_byte_is_left_to_the_copy_retry(no_pause):
    class Refusing(FakeUpstream):
        @contextlib.contextmanager
        def open_blob(self, repository, digest, *, offset=0, at=None):
            self.asked.append((offset, at))
            raise httpx.ConnectError("refused")
            yield  # pragma: no cover

    upstream = Refusing(b"x", [])
    with pytest.raises(httpx.ConnectError):
        list(upstream_chunks(upstream, "a", digest(b"x"), 1))
    assert len(upstream.asked) == 1
