"""The one place that builds httpx clients: endpoints, credentials and pools from config."""

from __future__ import annotations

import os
import threading

import httpx

from mirror.config import Config
from mirror.config.model import EnvCredentials
from mirror.errors import ConfigError
from mirror.oci.auth import Credentials, RegistryAuth
from mirror.oci.client import RegistryClient
from mirror.oci.reference import default_endpoint
from mirror.retry import RetryPolicy

__all__ = ["Clients", "credentials_from_env", "target_registry_name"]

_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=300.0)


def credentials_from_env(spec: EnvCredentials | None, where: str) -> Credentials | None:
    if spec is None:
        return None
    missing = [n for n in (spec.username_env, spec.password_env) if not os.environ.get(n)]
    if missing:
        raise ConfigError(
            f"{where}.credentials: environment variable(s) {', '.join(missing)} not set",
            hint="export them, or remove the credentials block for anonymous access",
        )
    return Credentials(os.environ[spec.username_env], os.environ[spec.password_env])


def target_registry_name(config: Config) -> str:
    target = config.model.target
    if target.registry:
        return target.registry
    assert target.registry_url is not None
    return httpx.URL(target.registry_url).netloc.decode("ascii")


class Clients:
    """The target client, and one client per upstream registry built on first use.

    Every configured credential is resolved up front, so a missing variable is a config
    error before anything is touched.
    """

    def __init__(self, config: Config, retry: RetryPolicy | None = None) -> None:
        model = config.model
        self.retry = retry or RetryPolicy()
        self._config = config
        self._pool_size = model.concurrency.images + model.concurrency.blobs + 2
        self._http: list[httpx.Client] = []
        self._upstreams: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()
        self._credentials = {
            host: credentials_from_env(settings.credentials, f"registries.{host}")
            for host, settings in model.registries.items()
        }
        assert model.target.registry_url is not None
        self.target = self._client(
            model.target.registry_url,
            target_registry_name(config),
            credentials_from_env(model.target.credentials, "target"),
        )

    def upstream(self, registry: str) -> RegistryClient:
        """The client for a canonical upstream registry name."""
        with self._lock:
            return self._upstream_locked(registry)

    def _upstream_locked(self, registry: str) -> RegistryClient:
        if registry not in self._upstreams:
            settings = self._config.model.registries.get(registry)
            url = settings.url if settings and settings.url else default_endpoint(registry)
            self._upstreams[registry] = self._client(url, registry, self._credentials.get(registry))
        return self._upstreams[registry]

    def _client(self, url: str, name: str, credentials: Credentials | None) -> RegistryClient:
        limits = httpx.Limits(
            max_connections=self._pool_size, max_keepalive_connections=self._pool_size
        )
        token_client = httpx.Client(timeout=_TIMEOUT)
        http = httpx.Client(
            auth=RegistryAuth(credentials, token_client), timeout=_TIMEOUT, limits=limits
        )
        self._http += [token_client, http]
        return RegistryClient(http, url, name=name, retry=self.retry)

    def close(self) -> None:
        for client in self._http:
            client.close()
