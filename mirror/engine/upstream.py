"""An upstream registry as the copier sees it: free requests, and paid manifest GETs.

HEADs, tag lists and blob GETs cost no pull, so they go through the first credential. A
manifest GET is paid from the budget of the first credential (in config order) that can
afford one, so a pool of accounts is used in turn as each runs low. Quota answers become
QuotaWait for the scheduler; they never fail an image.

A digest is pulled at most once a pass: the manifests pulled are kept by digest, and
images that ask for one another image is already pulling wait for it (four tags of one
index cost the pulls of one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from mirror.engine.quota import Budget, QuotaWait
from mirror.errors import HeadUnsupportedError, IntegrityError, NotFoundError, TooManyRequestsError
from mirror.oci.auth import RegistryAuth
from mirror.oci.client import RegistryClient
from mirror.oci.types import Descriptor, Manifest, TagList

__all__ = ["Member", "Upstream"]


@dataclass(frozen=True)
class Member:
    """One credential (or anonymous access) on the registry, with its own budget."""

    client: RegistryClient
    budget: Budget
    auth: RegistryAuth | None = None  # for its count of token-realm failures


class Upstream:
    def __init__(self, registry: str, members: list[Member]) -> None:
        assert members, "an upstream needs at least one (possibly anonymous) member"
        self.registry = registry
        self.members = members
        self._lock = threading.Lock()
        self._manifests: dict[str, Manifest] = {}  # pulled this pass, by digest
        self._pulling: dict[str, threading.Event] = {}

    @property
    def _free(self) -> Member:
        return self.members[0]

    def _quota_answer(self, member: Member, error: TooManyRequestsError) -> QuotaWait:
        if error.quota:
            return member.budget.exhausted(error.retry_after)
        return member.budget.throttled()

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        return self.find_manifest(repository, reference)[0]

    def find_manifest(self, repository: str, reference: str) -> tuple[Descriptor | None, bool]:
        """The manifest's descriptor by a free HEAD, and whether a pull was spent on it:
        where the registry cannot answer HEAD (HeadUnsupportedError), a paid GET tells,
        and the manifest it brings is kept, so copying it costs nothing more."""
        try:
            return self._free.client.head_manifest(repository, reference), False
        except TooManyRequestsError as error:
            raise self._quota_answer(self._free, error) from None
        except HeadUnsupportedError:
            pass
        try:
            manifest = self.get_manifest(repository, reference)
        except NotFoundError:
            return None, False  # a GET the registry did not serve spends nothing
        self._keep(manifest)
        return manifest.descriptor, True

    def pull(self, repository: str, reference: str, digest: str | None) -> tuple[Manifest, bool]:
        """A manifest, and whether a pull was spent on it: by `digest` from this pass's
        pulls (one GET per digest, however many images ask at once), else paid for."""
        if digest is None:
            manifest = self.get_manifest(repository, reference)
            self._keep(manifest)
            return manifest, True
        while True:
            with self._lock:
                kept = self._manifests.get(digest)
                if kept is not None:
                    return kept, False
                running = self._pulling.get(digest)
                if running is None:
                    self._pulling[digest] = threading.Event()
            if running is None:
                break
            running.wait()  # on its failure (a quota wait, an error) this one tries
        try:
            manifest = self.get_manifest(repository, digest)
            self._keep(manifest)
            return manifest, True
        finally:
            with self._lock:
                self._pulling.pop(digest).set()

    def _keep(self, manifest: Manifest) -> None:
        with self._lock:
            self._manifests[manifest.digest] = manifest

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Pull a manifest, paid by the first credential that can afford it."""
        member = self._affordable()
        try:
            manifest = member.client.get_manifest(repository, reference)
        except TooManyRequestsError as error:
            member.budget.settle(spent=False)
            raise self._quota_answer(member, error) from None
        except IntegrityError:
            member.budget.settle(spent=True)  # served (and counted), just not right
            raise
        except BaseException:
            member.budget.settle(spent=False)
            raise
        member.budget.settle(spent=True)
        return manifest

    def _affordable(self) -> Member:
        waits: list[QuotaWait] = []
        for member in self.members:
            try:
                member.budget.take()
                return member
            except QuotaWait as wait:
                waits.append(wait)
        raise min(waits, key=lambda w: w.seconds)

    def get_referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """Not a manifest pull: rate limits count GETs of /manifests/ only."""
        try:
            return self._free.client.get_referrers(repository, digest)
        except TooManyRequestsError as error:
            raise self._quota_answer(self._free, error) from None

    def list_tags(self, repository: str) -> TagList:
        return self._free.client.list_tags(repository)

    @contextmanager
    def open_blob(
        self, repository: str, digest: str, *, offset: int = 0, at: httpx.URL | None = None
    ) -> Iterator[httpx.Response]:
        """A blob's body from `offset` on (RegistryClient.open_blob says how)."""
        with self._free.client.open_blob(repository, digest, offset=offset, at=at) as response:
            yield response

    def spent(self) -> int:
        return sum(m.budget.spent for m in self.members)

    def token_realm_retries(self) -> int:
        return sum(m.auth.realm_failures for m in self.members if m.auth is not None)
