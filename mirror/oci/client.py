"""The OCI distribution API over httpx: the only module that speaks HTTP to registries.

Every request is built from validated parts (oci/grammar.py) and percent-encoded, every
body is streamed and read raw within a limit (oci/limits.py), and every value read from
a response is parsed before it is returned: callers only ever see grammar-checked tags,
digests and descriptors. Only a 2xx answer is a success.

Idempotent calls (HEAD, GET of a manifest, tag pages, manifest PUT) retry on their own;
blob transfer is split into open/upload steps so the copier can retry it as one unit.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from mirror.errors import (
    HeadUnsupportedError,
    InvalidUpstreamDataError,
    MirrorError,
    NotFoundError,
    ServerError,
    StorageError,
    error_from_response,
    printable,
    safe_url,
)
from mirror.oci.breaker import CONNECTION_FAILURES, Breaker
from mirror.oci.grammar import is_digest, require_digest, require_reference, require_repository
from mirror.oci.limits import (
    LISTING_PAGES,
    LISTING_TAGS,
    MANIFEST_BYTES,
    REFERRERS_PAGES,
    TAG_PAGE_BYTES,
    Timeouts,
    deadline,
    read_bounded,
    read_error_body,
    request_timeout,
)
from mirror.oci.origin import same_origin
from mirror.oci.retry import RetryPolicy
from mirror.oci.throttle import Pacer
from mirror.oci.types import (
    ACCEPT_MANIFESTS,
    OCI_INDEX,
    Descriptor,
    Manifest,
    TagList,
    parse_json_object,
    parse_manifest,
    parse_tag_page,
)

__all__ = ["RegistryClient", "next_link"]

log = structlog.get_logger(__name__)


# How registries without the referrers API answer it: 404 (the spec's signal), 400 or 405
# (no such route), 406 (google/go-containerregistry#1962). A 200 that is not an OCI index
# counts too.
NO_REFERRERS_API = (400, 404, 405, 406)
# Writes a pass retries after the registry failed to store them (5xx), all together.
STORAGE_RETRIES = 3
# A manifest HEAD with no route: 405 (distribution#1485, registry-cli#14), 501.
HEAD_UNSUPPORTED = (405, 501)


def next_link(response: httpx.Response) -> httpx.URL | None:
    """The `rel="next"` target of a `Link` header, resolved against the request URL."""
    for part in response.headers.get_list("link", split_commas=True):
        target, _, params = part.partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        rels = {p.strip().replace('"', "").lower() for p in params.split(";")}
        if "rel=next" in rels:
            try:
                return response.request.url.join(target[1:-1])
            except httpx.InvalidURL:
                raise InvalidUpstreamDataError(
                    f"invalid Link header from {safe_url(response.request.url)}"
                ) from None
    return None


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)", re.ASCII)


def _check_range(response: httpx.Response, offset: int, what: str) -> None:
    """A 206 must hold the bytes from `offset` on (RFC 9110: a recipient must not combine
    content of an invalid Content-Range); a 200 is the whole body."""
    if response.status_code != 206:
        return
    header = str(response.headers.get("content-range", ""))
    match = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if match is None or int(match[1]) != offset or int(match[2]) < offset:
        raise InvalidUpstreamDataError(
            f"{what}: asked for bytes from {offset}, the answer holds "
            f"{printable(repr(header), limit=80)}",
            hint="the registry or its CDN answered a resumed download with other bytes",
        )


def _in_listed_path(link: httpx.URL, listed: httpx.URL) -> httpx.URL:
    """The next tag page, in the repository that was listed. Artifactory's `Link` drops
    the repository key from the path (RTFACT-18971), so the next page would be another
    repository's or a 404: a link whose path is not the listed one keeps the listed path
    and takes only `last` and `n` from the link, as renovate does."""
    if link.path == listed.path:
        return link
    kept = [(k, v) for k, v in link.params.multi_items() if k in ("last", "n")]
    return listed.copy_with(params=kept)


def _is_json(response: httpx.Response) -> bool:
    """A registry's error answers are JSON, HEADs included (they carry the type, if not
    the body); a proxy's or a repository manager's HTML page is not."""
    kind = _media_type(response).lower()
    return kind == "application/json" or kind.endswith("+json")


class RegistryClient:
    """One registry endpoint; `name` is how messages refer to it (the canonical host)."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        name: str,
        retry: RetryPolicy,
        timeouts: Timeouts | None = None,
        manifest_puts: Pacer | None = None,
        requests: Pacer | None = None,
        breaker: Breaker | None = None,
        data_http: httpx.Client | None = None,
        confirm_heads: bool = True,
    ) -> None:
        """`manifest_puts` paces manifest PUTs (ECR's PutImage is rate-limited); `requests`
        paces every request (a registry that throttles); `breaker` stops asking a registry
        that keeps refusing connections (shared by its clients); `data_http` carries blob
        bodies (mirror/oci/wire.py), `http` everything else; `confirm_heads`: see
        head_manifest."""
        self._http = http
        self._data_http = data_http or http
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._base_text = str(self._base)
        self.name = name
        self._retry = retry
        self._timeouts = timeouts or Timeouts()
        self._socket_timeouts = self._timeouts.httpx()
        self._manifest_puts = manifest_puts
        self._requests = requests
        self._confirm_heads = confirm_heads
        self._lock = threading.Lock()
        self._storage_retries = STORAGE_RETRIES
        self._breaker = breaker or Breaker(name, "REGISTRY_UNAVAILABLE")

    @property
    def request_pacer(self) -> Pacer | None:
        """What paces every request to this registry (None: nothing does); it waits in a
        request hook of the clients this one was given (Pacer.hook)."""
        return self._requests

    def _url(self, repository: str, *parts: str) -> httpx.URL:
        """`/v2/<repository>/<parts>` from validated parts, each percent-encoded."""
        require_repository(repository, self.name)
        path = "/".join(quote(part, safe=":") for part in parts)  # ":" is a pchar (RFC 3986)
        # Appended, not joined: every part is grammar-checked (no `.` or `..` segment can
        # occur), and parsing one string costs half of resolving a reference against base.
        return httpx.URL(f"{self._base_text}v2/{quote(repository, safe='/')}/{path}")

    def _manifest_url(self, repository: str, reference: str) -> httpx.URL:
        return self._url(repository, "manifests", require_reference(reference, self.name))

    def _blob_url(self, repository: str, digest: str) -> httpx.URL:
        return self._url(repository, "blobs", require_digest(digest, self.name))

    @contextmanager
    def _stream(
        self,
        method: str,
        url: httpx.URL,
        *,
        follow_redirects: bool = False,
        data: bool = False,
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """`data`: a blob body, over the lean wire.

        A refused connection is the caller's to retry, until it opens the breaker: from
        then on the breaker decides, and the request waits for its probe and goes again
        (nothing of it was sent), until the registry answers or is given up on."""
        http = self._data_http if data else self._http
        while True:
            self._breaker.check()
            request = http.build_request(
                method, url, timeout=request_timeout(self._socket_timeouts), **kwargs
            )
            try:
                response = http.send(request, stream=True, follow_redirects=follow_redirects)
                break
            except CONNECTION_FAILURES:
                self._breaker.failed()
                if not self._breaker.open:
                    raise
            except BaseException:  # connected, and then something else went wrong
                self._breaker.answered()
                raise
        self._breaker.answered()
        try:
            yield response
        finally:
            response.close()

    def _check(self, response: httpx.Response, what: str, *, storing: bool = False) -> None:
        """Anything but 2xx is an error, with the start of its body for code and message;
        `storing`: a 5xx is the registry failing to store an upload (StorageError)."""
        if not 200 <= response.status_code < 300:
            error = error_from_response(response, f"{self.name}: {what}", read_error_body(response))
            if storing and isinstance(error, ServerError):
                raise self._storage_failure(error)
            raise error

    def _storage_failure(self, error: ServerError) -> StorageError:
        """A write the registry failed to store. A full disk fails every upload alike: the
        client (one per pass) retries STORAGE_RETRIES of them, then none."""
        with self._lock:
            retryable = self._storage_retries > 0
            self._storage_retries -= retryable
        failure = StorageError(
            error.message,
            status=error.status,
            code="TARGET_STORAGE",
            hint=f"{self.name} could not store what it was sent: check its disk or storage "
            "backend; mirror retries storage failures a few times a pass",
            retry_after=error.retry_after,
        )
        failure.retryable = retryable
        return failure

    def _call(
        self,
        method: str,
        url: httpx.URL,
        what: str,
        *,
        limit: int = 0,
        absent: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> tuple[httpx.Response, bytes] | None:
        """One request: None for an `absent` status, else the response and its body, read
        within `limit` bytes (without a limit the body is drained, up to a small bound)."""
        with self._stream(method, url, **kwargs) as response:
            if response.status_code in absent:
                return None
            self._check(response, what)
            body = read_bounded(response, limit, what) if limit else read_error_body(response)
            return response, body

    def _announced_digest(self, response: httpx.Response, what: str) -> str:
        """The Docker-Content-Digest header, grammar-checked; "" when absent (it is optional)."""
        digest = str(response.headers.get("docker-content-digest", "")).strip()
        if digest:
            require_digest(digest, f"{self.name}: {what}: Docker-Content-Digest")
        return digest

    def _require(self, found: tuple[httpx.Response, bytes] | None) -> tuple[httpx.Response, bytes]:
        assert found is not None, "no absent status was given"
        return found

    def ping(self) -> None:
        """Check that the endpoint speaks the distribution API and accepts our credentials."""
        url = self._base.join("v2/")
        self._retry.call(lambda: self._call("GET", url, "API check"))

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """Digest, media type and size of a manifest, without pulling it; None if absent.

        A HEAD the registry cannot answer (HEAD_UNSUPPORTED, or a 404 that is no
        registry's JSON error: Nexus's HTML page) proves nothing: with `confirm_heads` a
        GET decides here; without it (an upstream, whose GETs are paid for from a budget)
        HeadUnsupportedError tells the caller to decide."""
        url = self._manifest_url(repository, reference)
        what = f"manifest {repository}:{reference}"

        def attempt() -> Descriptor | None:
            with self._stream(
                "HEAD", url, headers={"Accept": ACCEPT_MANIFESTS}, follow_redirects=True
            ) as response:
                status = response.status_code
                if status == 404 and _is_json(response):
                    return None
                if status == 404 or status in HEAD_UNSUPPORTED:
                    raise HeadUnsupportedError(
                        f"{self.name}: {what}: HEAD answered {status} "
                        f"({printable(_media_type(response) or 'no Content-Type', limit=60)})",
                        status=status,
                        code="HEAD_UNSUPPORTED",
                        hint="the registry does not answer HEAD for manifests; a GET decides",
                    )
                self._check(response, what)
                digest = self._announced_digest(response, what)
                length = response.headers.get("content-length", "")
                return Descriptor(
                    media_type=_media_type(response),
                    digest=digest,
                    size=int(length) if length.isdigit() else 0,
                )

        try:
            return self._retry.call(attempt)
        except HeadUnsupportedError:
            if not self._confirm_heads:
                raise
        try:
            manifest = self.get_manifest(repository, reference)
        except NotFoundError:
            return None
        return manifest.descriptor

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Pull a manifest and check its bytes against the digest asked for (or announced)."""
        url = self._manifest_url(repository, reference)
        what = f"manifest {repository}:{reference}"

        def attempt() -> Manifest:
            response, raw = self._require(
                self._call(
                    "GET",
                    url,
                    what,
                    limit=MANIFEST_BYTES,
                    headers={"Accept": ACCEPT_MANIFESTS},
                    follow_redirects=True,
                )
            )
            announced = self._announced_digest(response, what)
            expected = reference if is_digest(reference) else announced or None
            return parse_manifest(raw, _media_type(response), expected)

        with deadline(self._timeouts.metadata, f"{self.name}: reading {what}"):
            return self._retry.call(attempt)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        url = self._manifest_url(repository, reference)

        def attempt() -> None:
            if self._manifest_puts is not None:
                self._manifest_puts.wait()
            headers = {"Content-Type": manifest.media_type}
            with self._stream("PUT", url, content=manifest.raw, headers=headers) as response:
                self._check(response, f"push manifest {repository}:{reference}", storing=True)
                read_error_body(response)

        self._retry.call(attempt)

    def blob_exists(self, repository: str, digest: str) -> bool:
        url = self._blob_url(repository, digest)

        def attempt() -> bool:
            found = self._call(
                "HEAD", url, f"blob {repository}@{digest}", absent=(404,), follow_redirects=True
            )
            return found is not None

        return self._retry.call(attempt)

    @contextmanager
    def open_blob(
        self, repository: str, digest: str, *, offset: int = 0, at: httpx.URL | None = None
    ) -> Iterator[httpx.Response]:
        """Stream a blob, following redirects (Authorization is dropped on other origins).

        Its raw bytes are read and verified against the digest and size while they
        stream, whatever Content-Encoding says: an already-gzip layer that a server labels
        `Content-Encoding: gzip` (Apache in front of Pulp) is those bytes, and a body
        compressed in transit fails its digest. Nothing is ever inflated.

        A cut download resumes from `offset` with `Range: bytes=<offset>-`: first at `at`,
        the URL that served the cut body (a CDN a redirect led to), then, when that no
        longer serves (a presigned URL that expired), through the registry again. The
        answer is a 206 whose Content-Range starts at `offset`, or a 200 with the whole
        blob, whose first `offset` bytes the caller skips."""
        what = f"blob {repository}@{digest}"
        url = self._blob_url(repository, digest)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if at is not None and at != url:
            with self._stream("GET", at, headers=headers, data=True) as r:
                if r.status_code in (200, 206):
                    _check_range(r, offset, what)
                    yield r
                    return
        with self._stream("GET", url, headers=headers, follow_redirects=True, data=True) as r:
            self._check(r, what)
            _check_range(r, offset, what)
            yield r

    def start_upload(self, repository: str, mount: tuple[str, str] | None = None) -> str | None:
        """Open an upload session; with `mount=(digest, from_repo)` try a cross-repo mount.

        Returns None when the blob was mounted (201), else the upload URL.
        """
        params: dict[str, Any] = {}
        if mount:
            params = {"mount": require_digest(mount[0], self.name), "from": mount[1]}
            require_repository(mount[1], self.name)
        url = self._url(repository, "blobs", "uploads", "")
        with self._stream("POST", url, params=params) as response:
            self._check(response, f"start upload {repository}", storing=True)
            read_error_body(response)
        if response.status_code == 201 and mount:
            return None
        location = response.headers.get("location")
        if not location:
            raise error_from_response(response, f"{self.name}: upload without Location", b"")
        return str(response.request.url.join(location))

    def finish_upload(
        self, location: str, digest: str, size: int, chunks: Iterable[bytes | memoryview]
    ) -> None:
        """Send the whole blob in one streamed PUT (ECR's chunked PATCH does not conform).
        What the body's source raises (an upstream cut short) goes through unchanged."""
        url = httpx.URL(location).copy_merge_params({"digest": require_digest(digest, self.name)})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self._stream("PUT", url, content=chunks, headers=headers, data=True) as response:
            self._check(response, f"upload blob {digest}", storing=True)
            read_error_body(response)

    def cancel_upload(self, location: str) -> None:
        """Best effort: end an upload session that will never complete (DELETE), so the
        target does not keep its partial data. Never raises, never waits on the breaker."""
        if self._breaker.open:
            return
        try:
            self._call("DELETE", httpx.URL(location), "cancel upload", absent=(404,))
        except (MirrorError, httpx.HTTPError) as exc:
            log.debug("upload_not_cancelled", error=str(exc))

    def _next_page(self, response: httpx.Response, what: str) -> httpx.URL | None:
        """The next page, which must be on this registry's origin or on the one that served
        this page (where the registry redirected the listing, as registry.k8s.io does):
        anywhere else the Link could lead the listing, and the auth flow, anywhere."""
        url = next_link(response)
        allowed = url is None or any(
            same_origin(url, known) for known in (self._base, response.request.url)
        )
        if url is not None and not allowed:
            raise InvalidUpstreamDataError(
                f"{self.name}: {what}: the next page is on another origin "
                f"({safe_url(url)}); refused",
                hint="the registry (or a proxy) sent a Link header to another host",
            )
        return url

    def get_referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """Manifests whose `subject` is `digest`, from the OCI 1.1 referrers API; None when
        the registry has no such API (404/405, or a 200 that is not an OCI index), so the
        caller falls back to the `sha256-<hex>` tag. Follows `Link` pagination."""
        what = f"referrers of {repository}@{digest}"
        url: httpx.URL | None = self._url(repository, "referrers", require_digest(digest, what))
        found: list[Descriptor] = []
        for page in range(REFERRERS_PAGES):
            assert url is not None
            page_url = url

            def attempt(page_url: httpx.URL = page_url) -> tuple[httpx.Response, bytes] | None:
                return self._call(
                    "GET",
                    page_url,
                    what,
                    limit=TAG_PAGE_BYTES,
                    absent=NO_REFERRERS_API,
                    headers={"Accept": OCI_INDEX},
                    follow_redirects=True,
                )

            with deadline(self._timeouts.metadata, f"{self.name}: listing {what}"):
                answer = self._retry.call(attempt)
            if answer is None or _media_type(answer[0]) != OCI_INDEX:
                return None if page == 0 else found
            response, raw = answer
            body = parse_json_object(raw, f"{self.name}: {what}")
            manifests = body.get("manifests") or []
            if not isinstance(manifests, list):
                raise InvalidUpstreamDataError(f"{self.name}: {what}: manifests is not a list")
            found += [Descriptor.from_json(d) for d in manifests]
            url = self._next_page(response, what)
            if url is None:
                return found
        raise InvalidUpstreamDataError(f"{self.name}: {what}: more than {REFERRERS_PAGES} pages")

    def list_tags(self, repository: str) -> TagList:
        """Every valid tag, following `Link` pagination (a tag list is not a manifest pull).

        Tags outside the grammar are dropped (and counted), as skopeo does; a listing over
        LISTING_PAGES pages or LISTING_TAGS tags, or one that is not a tag list, fails."""
        what = f"tags of {repository}"
        url: httpx.URL | None = self._url(repository, "tags", "list").copy_merge_params({"n": 1000})
        listing = TagList()
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= LISTING_PAGES:
                raise InvalidUpstreamDataError(
                    f"{self.name}: {what}: more than {LISTING_PAGES} pages; refused"
                )
            seen.add(str(url))
            page_url = url

            def attempt(page_url: httpx.URL = page_url) -> tuple[httpx.Response, bytes]:
                return self._require(
                    self._call("GET", page_url, what, limit=TAG_PAGE_BYTES, follow_redirects=True)
                )

            response, raw = self._retry.call(attempt)
            listing.extend(parse_tag_page(raw, f"{self.name}: {what}"))
            if len(listing.tags) + len(listing.dropped) > LISTING_TAGS:
                raise InvalidUpstreamDataError(
                    f"{self.name}: {what}: more than {LISTING_TAGS} tags; refused",
                    hint="select tags by a list instead of a rule for this repository",
                )
            url = self._next_page(response, what)
            if url is not None:
                url = _in_listed_path(url, response.request.url)
            if url is not None and str(url) in seen:
                break
        return listing
