"""The OCI distribution API over httpx: the only module that speaks HTTP to registries.

Idempotent calls (HEAD, GET of a manifest, tag pages, manifest PUT) retry on their own;
blob transfer is split into open/upload steps so the copier can retry it as one unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from mirror.errors import error_from_response
from mirror.oci.types import ACCEPT_MANIFESTS, OCI_INDEX, Descriptor, Manifest, parse_manifest
from mirror.quota import Pacer
from mirror.retry import RetryPolicy

__all__ = ["RegistryClient", "next_link"]

_MAX_TAG_PAGES = 10_000


def next_link(response: httpx.Response) -> httpx.URL | None:
    """The `rel="next"` target of a `Link` header, resolved against the request URL."""
    for part in response.headers.get_list("link", split_commas=True):
        target, _, params = part.partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        rels = {p.strip().replace('"', "").lower() for p in params.split(";")}
        if "rel=next" in rels:
            return response.request.url.join(target[1:-1])
    return None


class RegistryClient:
    """One registry endpoint; `name` is how messages refer to it (the canonical host)."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        name: str,
        retry: RetryPolicy,
        manifest_puts: Pacer | None = None,
    ) -> None:
        """`manifest_puts` paces manifest PUTs (ECR's PutImage is rate-limited)."""
        self._http = http
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self.name = name
        self._retry = retry
        self._manifest_puts = manifest_puts

    def _url(self, path: str) -> httpx.URL:
        return self._base.join(path.lstrip("/"))

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code >= 400:
            response.read()
            raise error_from_response(response, f"{self.name}: {what}")
        return response

    def ping(self) -> None:
        """Check that the endpoint speaks the distribution API and accepts our credentials."""

        def attempt() -> None:
            self._check(self._http.get(self._url("/v2/")), "API check")

        self._retry.call(attempt)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """Digest, media type and size of a manifest, without pulling it; None if absent."""

        def attempt() -> Descriptor | None:
            response = self._http.head(
                self._url(f"/v2/{repository}/manifests/{reference}"),
                headers={"Accept": ACCEPT_MANIFESTS},
            )
            if response.status_code == 404:
                return None
            self._check(response, f"manifest {repository}:{reference}")
            return Descriptor(
                media_type=response.headers.get("content-type", "").split(";")[0].strip(),
                digest=response.headers.get("docker-content-digest", ""),
                size=int(response.headers.get("content-length") or 0),
            )

        return self._retry.call(attempt)

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Pull a manifest and check its bytes against the digest asked for (or announced)."""

        def attempt() -> Manifest:
            response = self._check(
                self._http.get(
                    self._url(f"/v2/{repository}/manifests/{reference}"),
                    headers={"Accept": ACCEPT_MANIFESTS},
                ),
                f"manifest {repository}:{reference}",
            )
            expected = (
                reference
                if reference.startswith("sha256:")
                else response.headers.get("docker-content-digest")
            )
            return parse_manifest(
                response.content, response.headers.get("content-type", ""), expected
            )

        return self._retry.call(attempt)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        def attempt() -> None:
            if self._manifest_puts is not None:
                self._manifest_puts.wait()
            self._check(
                self._http.put(
                    self._url(f"/v2/{repository}/manifests/{reference}"),
                    content=manifest.raw,
                    headers={"Content-Type": manifest.media_type},
                ),
                f"push manifest {repository}:{reference}",
            )

        self._retry.call(attempt)

    def blob_exists(self, repository: str, digest: str) -> bool:
        def attempt() -> bool:
            response = self._http.head(
                self._url(f"/v2/{repository}/blobs/{digest}"), follow_redirects=True
            )
            if response.status_code == 404:
                return False
            self._check(response, f"blob {repository}@{digest}")
            return True

        return self._retry.call(attempt)

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[httpx.Response]:
        """Stream a blob, following redirects (Authorization is dropped on other origins)."""
        with self._http.stream(
            "GET", self._url(f"/v2/{repository}/blobs/{digest}"), follow_redirects=True
        ) as response:
            self._check(response, f"blob {repository}@{digest}")
            yield response

    def start_upload(self, repository: str, mount: tuple[str, str] | None = None) -> str | None:
        """Open an upload session; with `mount=(digest, from_repo)` try a cross-repo mount.

        Returns None when the blob was mounted (201), else the upload URL.
        """
        params: dict[str, Any] = {"mount": mount[0], "from": mount[1]} if mount else {}
        url = self._url(f"/v2/{repository}/blobs/uploads/")
        response = self._check(self._http.post(url, params=params), f"start upload {repository}")
        if response.status_code == 201 and mount:
            return None
        location = response.headers.get("location")
        if not location:
            raise error_from_response(response, f"{self.name}: upload without Location")
        return str(response.request.url.join(location))

    def finish_upload(self, location: str, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """Send the whole blob in one streamed PUT (ECR's chunked PATCH does not conform)."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response = self._http.put(
            url,
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self._check(response, f"upload blob {digest}")

    def get_referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """Manifests whose `subject` is `digest`, from the OCI 1.1 referrers API; None when
        the registry has no such API (it answers 404), so the caller falls back to the
        `sha256-<hex>` tag. Follows `Link` pagination."""
        url: httpx.URL | None = self._url(f"/v2/{repository}/referrers/{digest}")
        found: list[Descriptor] = []
        pages = 0
        while url is not None and pages < _MAX_TAG_PAGES:
            pages += 1
            page_url = url

            def attempt(page_url: httpx.URL = page_url) -> httpx.Response | None:
                response = self._http.get(page_url, headers={"Accept": OCI_INDEX})
                if response.status_code in (404, 405):
                    return None
                return self._check(response, f"referrers of {repository}@{digest}")

            response = self._retry.call(attempt)
            if response is None:
                return None if pages == 1 else found
            body = response.json()
            found += [Descriptor.from_json(d) for d in body.get("manifests") or []]
            url = next_link(response)
        return found

    def list_tags(self, repository: str) -> list[str]:
        """Every tag, following `Link` pagination (a tag list is not a manifest pull)."""
        url: httpx.URL | None = self._url(f"/v2/{repository}/tags/list").copy_merge_params(
            {"n": 1000}
        )
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None and str(url) not in seen and len(seen) < _MAX_TAG_PAGES:
            seen.add(str(url))
            page_url = url

            def attempt(page_url: httpx.URL = page_url) -> httpx.Response:
                return self._check(self._http.get(page_url), f"tags of {repository}")

            response = self._retry.call(attempt)
            body = response.json()
            tags.extend(str(t) for t in (body.get("tags") or []))
            url = next_link(response)
        return tags
