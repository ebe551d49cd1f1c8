"""An upstream registry as the copier sees it: free requests, and paid manifest GETs.

HEADs, tag lists and blob GETs cost no pull, so they go through the first credential. A
manifest GET is paid from the budget of the first credential (in config order) that can
afford one, so a pool of accounts is used in turn as each runs low. Quota answers become
QuotaWait for the scheduler; they never fail an image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from mirror.errors import IntegrityError, TooManyRequestsError
from mirror.oci.auth import RegistryAuth
from mirror.oci.client import RegistryClient
from mirror.oci.types import Descriptor, Manifest, TagList
from mirror.quota import Budget, QuotaWait

__all__ = ["Member", "Upstream"]

QUOTA_CODE = "TOOMANYREQUESTS"


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

    @property
    def _free(self) -> Member:
        return self.members[0]

    def _quota_answer(self, member: Member, error: TooManyRequestsError) -> QuotaWait:
        if error.code == QUOTA_CODE:
            return member.budget.exhausted(error.retry_after)
        return member.budget.throttled()

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        try:
            return self._free.client.head_manifest(repository, reference)
        except TooManyRequestsError as error:
            raise self._quota_answer(self._free, error) from None

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
    def open_blob(self, repository: str, digest: str) -> Iterator[httpx.Response]:
        with self._free.client.open_blob(repository, digest) as response:
            yield response

    def spent(self) -> int:
        return sum(m.budget.spent for m in self.members)

    def token_realm_retries(self) -> int:
        return sum(m.auth.realm_failures for m in self.members if m.auth is not None)
