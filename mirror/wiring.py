"""The one place that builds httpx clients: endpoints, credentials, budgets and pools."""

from __future__ import annotations

import dataclasses
import threading

import httpx

from mirror.config import Config
from mirror.config.model import RegistrySettings
from mirror.credentials import resolve_credentials
from mirror.oci.auth import Credentials, RegistryAuth
from mirror.oci.client import RegistryClient
from mirror.oci.reference import default_endpoint
from mirror.quota import Budget
from mirror.retry import RetryPolicy
from mirror.upstream import Member, Upstream

__all__ = ["Clients", "target_registry_name"]

_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=300.0)
ANONYMOUS = "anonymous"


def target_registry_name(config: Config) -> str:
    target = config.model.target
    if target.registry:
        return target.registry
    assert target.registry_url is not None
    return httpx.URL(target.registry_url).netloc.decode("ascii")


def _label(credentials: Credentials | None) -> str:
    return f"account {credentials.username}" if credentials else ANONYMOUS


class Clients:
    """The target client, and one Upstream per registry built on first use.

    Every configured credential is resolved up front, so a missing variable or secret is
    a config error before anything is touched.
    """

    def __init__(self, config: Config, retry: RetryPolicy | None = None) -> None:
        model = config.model
        self.retry = retry or RetryPolicy()
        self._config = config
        self._pool_size = model.concurrency.images + model.concurrency.blobs + 2
        self._http: list[httpx.Client] = []
        self._upstreams: dict[str, Upstream] = {}
        self._lock = threading.Lock()
        self._credentials: dict[str, list[Credentials]] = {
            host: [
                resolve_credentials(spec, f"registries.{host}.credentials")
                for spec in settings.credential_list
            ]
            for host, settings in model.registries.items()
        }
        assert model.target.registry_url is not None
        target_credentials = (
            resolve_credentials(model.target.credentials, "target.credentials")
            if model.target.credentials
            else None
        )
        self.target = self._client(
            model.target.registry_url, target_registry_name(config), target_credentials, self.retry
        )

    def upstream(self, registry: str) -> Upstream:
        """The upstream for a canonical registry name, with a budget per credential."""
        with self._lock:
            if registry not in self._upstreams:
                self._upstreams[registry] = self._build_upstream(registry)
            return self._upstreams[registry]

    def used_upstreams(self) -> list[Upstream]:
        with self._lock:
            return list(self._upstreams.values())

    def _build_upstream(self, registry: str) -> Upstream:
        settings = self._config.model.registries.get(registry) or RegistrySettings()
        url = settings.url or default_endpoint(registry)
        retry = dataclasses.replace(self.retry, retry_quota=False)
        members = []
        pool: list[Credentials | None] = [*self._credentials.get(registry, [])] or [None]
        for credentials in pool:
            budget = Budget(registry, _label(credentials), reserve=settings.rate_limit.reserve)
            client = self._client(url, registry, credentials, retry, observe=budget)
            members.append(Member(client, budget))
        return Upstream(registry, members)

    def _client(
        self,
        url: str,
        name: str,
        credentials: Credentials | None,
        retry: RetryPolicy,
        observe: Budget | None = None,
    ) -> RegistryClient:
        limits = httpx.Limits(
            max_connections=self._pool_size, max_keepalive_connections=self._pool_size
        )
        token_client = httpx.Client(timeout=_TIMEOUT)
        hooks = {"response": [observe.observe]} if observe else {}
        http = httpx.Client(
            auth=RegistryAuth(credentials, token_client, name),
            timeout=_TIMEOUT,
            limits=limits,
            event_hooks=hooks,
        )
        self._http += [token_client, http]
        return RegistryClient(http, url, name=name, retry=retry)

    def close(self) -> None:
        for client in self._http:
            client.close()
