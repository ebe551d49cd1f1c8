"""The one place that builds httpx clients: endpoints, credentials, budgets and pools."""

from __future__ import annotations

import dataclasses
import os
import threading
from functools import partial
from typing import Any

import httpx

from mirror.aws.ecr import Ecr, Refusals, RefusedSetting, call_aws
from mirror.aws.ptc import PullThroughCache
from mirror.aws.replication import Replication
from mirror.config import Config
from mirror.config.model import (
    ON_DEMAND_QUEUE_ENV,
    CoordinationSettings,
    RegistrySettings,
    SecretCredentials,
    on_demand_queue_url,
)
from mirror.coordination import Coordinator
from mirror.engine.credentials import resolve_credentials
from mirror.engine.naming import target_registry_name
from mirror.engine.quota import Budget
from mirror.engine.replicas import ReplicaTarget
from mirror.engine.upstream import Member, Upstream
from mirror.errors import ConfigError
from mirror.oci.addresses import redirect_guard
from mirror.oci.auth import RefreshingBasicAuth, RegistryAuth
from mirror.oci.breaker import Breaker
from mirror.oci.client import RegistryClient
from mirror.oci.credentials import Credentials
from mirror.oci.grammar import ecr_host
from mirror.oci.reference import default_endpoint
from mirror.oci.retry import RetryPolicy
from mirror.oci.throttle import Pacer
from mirror.oci.unasked import bound_unasked_body
from mirror.oci.wire import CookielessClient, WireTransport, proxy_configured

__all__ = [
    "COORDINATION_TABLE_ENV",
    "Clients",
    "caller_account",
    "config_region",
    "coordination_settings",
    "on_demand_queue",
    "open_coordinator",
]

# Nothing from a registry is decompressed (oci/limits.py): ask for identity, so a proxy
# has no reason to compress, and httpx's default gzip/deflate offer is never made.
_HEADERS = {"Accept-Encoding": "identity"}
TARGET_UNAVAILABLE, UPSTREAM_UNAVAILABLE = "TARGET_UNAVAILABLE", "UPSTREAM_UNAVAILABLE"
# registry.k8s.io -> Artifact Registry -> a storage bucket is three; more is a loop.
MAX_REDIRECTS = 5
ANONYMOUS = "anonymous"
# ECR's default PutImage rate is 10 a second per Region; stay under it, and 429s that
# still come (other writers share the quota) are retried with backoff.
ECR_PUT_IMAGE_RATE = 8.0
# Requests a second where a registry throttles each credential by a rate it states:
# public.ecr.aws allows 1 a second anonymous and 10 signed in (ECR Public service
# quotas), answering more with `429 TOOMANYREQUESTS: Rate exceeded`. (anonymous, signed in)
DOCUMENTED_REQUEST_RATES = {"public.ecr.aws": (1.0, 10.0)}
# Requests a second where a registry limits an address, whichever credential asks:
# Docker Hub's abuse rate limit is "in the order of thousands of requests per minute"
# per IPv4 address or IPv6 /64, for every request, HEADs included (Docker Hub usage and
# limits). 900 a minute stays under it. It applies at Docker Hub's own endpoint; through
# `url:` (a proxy or mirror in between, which has its own egress) only a configured
# requests_per_second does.
ADDRESS_REQUEST_RATES = {"docker.io": 15.0}


def caller_account(region: str | None = None) -> str | None:
    """The account of the current AWS credentials (STS needs no permission), or None when
    there are none or STS cannot be reached. `region`: the config's, when the environment
    names none."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(boto3.client("sts", region_name=region).get_caller_identity()["Account"])
    except (BotoCoreError, ClientError):
        return None


def config_region(config: Config) -> str:
    region = (
        config.model.target.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    if not region:
        raise ConfigError(
            "target.region is not set and neither is AWS_REGION",
            hint="add region: to the target section",
        )
    return region


def _label(credentials: Credentials | None) -> str:
    return f"account {credentials.username}" if credentials else ANONYMOUS


class Clients:
    """The target client, and one Upstream per registry built on first use.

    Every configured credential is resolved up front, so a missing variable or secret is
    a config error before anything is touched.
    """

    # Open at the end of a pass when the target refused every connection: the daemon's
    # liveness counts such passes.
    target_breaker: Breaker

    def __init__(
        self,
        config: Config,
        retry: RetryPolicy | None = None,
        *,
        upstream_only: bool = False,
        coordinator: Coordinator | None = None,
    ) -> None:
        """`upstream_only`: clients for the upstreams alone (`validate --resolve` lists
        tags): the target is neither reached nor built, nor its AWS account asked for.
        `coordinator`: the table this process shares quota, pace and work through."""
        model = config.model
        self.retry = retry or RetryPolicy()
        self._config = config
        self.coordinator = coordinator
        self._pool_size = model.concurrency.images + model.concurrency.blobs + 2
        self.timeouts = model.timeouts.resolved()
        self._http: list[httpx.Client] = []
        # One TLS context (CA bundle loaded once) for every client of the run: building one
        # costs ~30 ms of CPU, and a credential pool has three clients per credential.
        self._tls = httpx.create_ssl_context()
        self._upstreams: dict[str, Upstream] = {}
        self._lock = threading.Lock()
        self.aws_clients: list[Any] = []  # boto3 clients, for tests that record calls
        self._credentials: dict[str, list[Credentials]] = {
            host: [
                resolve_credentials(spec, f"registries.{host}.credentials")
                for spec in settings.credential_list
            ]
            for host, settings in model.registries.items()
        }
        self.refusals = Refusals()  # settings ECR refused, from every part that sets them
        self.ecr: Ecr | None = None
        self.ptc: PullThroughCache | None = None
        self.replication: Replication | None = None
        self._replicas: list[ReplicaTarget] | None = None
        if upstream_only:
            return
        if model.target.kind == "ecr":
            self.target, self.target_registry = self._ecr_target()
        else:
            assert model.target.registry_url is not None
            target_credentials = (
                resolve_credentials(model.target.credentials, "target.credentials")
                if model.target.credentials
                else None
            )
            self.target_registry = target_registry_name(config)
            self.target_breaker = self._breaker(self.target_registry, TARGET_UNAVAILABLE)
            self.target = self._client(
                model.target.registry_url,
                self.target_registry,
                RegistryAuth(
                    target_credentials,
                    self._token_client(),
                    self.target_registry,
                    origin=model.target.registry_url,
                ),
                self.retry,
                breaker=self.target_breaker,
            )

    def _ecr_target(self) -> tuple[RegistryClient, str]:
        """ECR: the control plane through boto3, the data plane with its 12-hour token."""
        import boto3  # only ECR targets need AWS
        from botocore.config import Config as BotoConfig

        target = self._config.model.target
        region = config_region(self._config)
        session = boto3.session.Session(region_name=region)
        client = session.client(
            "ecr", config=BotoConfig(retries={"mode": "standard", "max_attempts": 8})
        )
        self.aws_clients.append(client)
        host = target.registry
        if not host:
            sts = session.client("sts")
            self.aws_clients.append(sts)
            host = ecr_host(call_aws(sts, "get_caller_identity")["Account"], region)
        config = self._config
        self.ecr = Ecr(
            client,
            target.repository,
            config.lifecycle_policy,
            config.retired_lifecycle_policy,
            prefix=target.repository_prefix,
            refusals=self.refusals,
        )
        if any(r.mode == "pull-through-cache" for r in self._config.model.registries.values()):
            secrets = session.client("secretsmanager")
            self.aws_clients.append(secrets)
            # prune leaves ECR's cache repositories alone: they keep the default's expiry
            self.ptc = PullThroughCache(
                client,
                secrets,
                target.repository,
                config.lifecycle_policy or config.retired_lifecycle_policy,
                self.refusals,
            )
        self._session = session
        self._account = host.split(".", 1)[0]
        if target.replicate_to:
            self.replication = Replication(
                client,
                self._regional_client,
                target.repository,
                config.lifecycle_policy or config.retired_lifecycle_policy,
                target.repository_prefix,
                target.replicate_to,
                host.split(".", 1)[0],
                self.refusals,
            )
        url = target.registry_url or f"https://{host}"
        self.target_breaker = self._breaker(host, TARGET_UNAVAILABLE)
        auth = RefreshingBasicAuth(self.ecr.authorization, origin=url)
        client = self._client(
            url,
            host,
            auth,
            self.retry,
            pacer=Pacer(ECR_PUT_IMAGE_RATE),
            breaker=self.target_breaker,
        )
        return client, host

    def ensure_pull_through_cache(self, host: str, prefix: str) -> None:
        """The ECR rule (and its secret and template) that serves `host` under `prefix`."""
        assert self.ptc is not None, "the config loader requires kind: ecr for this"
        settings = self._config.model.registries[host]
        specs = settings.credential_list
        resolved = self._credentials.get(host) or []
        secret_arn = (
            specs[0].secret_arn if specs and isinstance(specs[0], SecretCredentials) else None
        )
        self.ptc.ensure(
            host, prefix, resolved[0] if resolved else None, secret_arn, settings.role_arn
        )

    def prepare_repository(self, name: str) -> None:
        """Make sure a target repository can take a push, with the configured settings
        (ECR creates one on push only under a CREATE_ON_PUSH template)."""
        if self.ecr is not None:
            self.ecr.ensure_repository(name)

    def _regional_client(self, region: str) -> Any:
        """An ECR client in `region`, from the target's session."""
        return self._session.client("ecr", region_name=region)

    def replica_targets(self) -> list[ReplicaTarget]:
        """The replicas in the primary's account, each with its own data-plane client and
        login (a token is good for one Region), built once."""
        if self._replicas is not None:
            return self._replicas
        self._replicas = []
        target = self._config.model.target
        for destination in target.replicate_to if self.ecr is not None else []:
            if destination.account not in (None, self._account):
                continue
            regional = self._regional_client(destination.region)
            self.aws_clients.append(regional)
            ecr = Ecr(
                regional,
                target.repository,
                self._config.lifecycle_policy,
                self._config.retired_lifecycle_policy,
                prefix=target.repository_prefix,
                refusals=self.refusals,
            )
            host = ecr_host(self._account, destination.region)
            url = destination.registry_url or f"https://{host}"
            client = self._client(
                url,
                host,
                RefreshingBasicAuth(ecr.authorization, origin=url),
                self.retry,
                pacer=Pacer(ECR_PUT_IMAGE_RATE),
                breaker=self._breaker(host, TARGET_UNAVAILABLE),
            )
            self._replicas.append(ReplicaTarget(destination.region, host, client, ecr))
        return self._replicas

    def settle_repository(self, name: str) -> None:
        """An image already in place: its repository's settings reconciled (ECR)."""
        if self.ecr is not None:
            self.ecr.settle_repository(name)

    def refused_settings(self) -> list[RefusedSetting]:
        """Every setting ECR refused in this run."""
        return self.refusals.all()

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
        breaker = self._breaker(registry, UPSTREAM_UNAVAILABLE)  # one host, any credential
        pacer = self._registry_pacer(registry, settings)
        documented = DOCUMENTED_REQUEST_RATES.get(registry)
        coordinator = self.coordinator
        for credentials in pool:
            budget = Budget(
                registry,
                _label(credentials),
                reserve=settings.rate_limit.reserve,
                shared=partial(coordinator.ledger.quota, registry) if coordinator else None,
            )
            auth = RegistryAuth(credentials, self._token_client(), registry, origin=url)
            requests = pacer or Pacer(
                documented[credentials is not None] if documented else None, name=registry
            )
            client = self._client(
                url,
                registry,
                auth,
                retry,
                observe=budget,
                requests=requests,
                breaker=breaker,
                confirm_heads=False,  # a GET upstream is paid: Upstream decides
            )
            members.append(Member(client, budget, auth))
        return Upstream(registry, members)

    def _registry_pacer(self, registry: str, settings: RegistrySettings) -> Pacer | None:
        """One pacer for every credential on a registry whose rate is the address's (the
        configured one, or Docker Hub's abuse limit), shared through the coordination
        table with every other process; None where each credential has its own."""
        rate = settings.requests_per_second
        if rate is None and settings.url is None:
            rate = ADDRESS_REQUEST_RATES.get(registry)
        if rate is None:
            return None
        shared = self.coordinator.shared_rate(registry, rate) if self.coordinator else None
        return Pacer(rate, name=registry, shared=shared)

    def _breaker(self, name: str, code: str) -> Breaker:
        """A registry's breaker, which gives up after `timeouts.unreachable`."""
        return Breaker(name, code, give_up=self.timeouts.unreachable)

    def _token_client(self) -> httpx.Client:
        """The token realm's client: on the wire too, so the realm is connected to at the
        address that was judged."""
        proxied = proxy_configured()
        hooks = {"response": [redirect_guard(resolve=proxied), bound_unasked_body]}
        wire = None if proxied else WireTransport(self._tls)
        client = CookielessClient(
            timeout=self.timeouts.httpx(),
            headers=_HEADERS,
            verify=self._tls,
            event_hooks=hooks,
            transport=wire,
        )
        self._http.append(client)
        return client

    def _client(
        self,
        url: str,
        name: str,
        auth: httpx.Auth,
        retry: RetryPolicy,
        observe: Budget | None = None,
        pacer: Pacer | None = None,
        *,
        breaker: Breaker,
        requests: Pacer | None = None,
        confirm_heads: bool = True,
    ) -> RegistryClient:
        proxied = proxy_configured()  # no proxy: the wire judges addresses at connect
        limits = httpx.Limits(
            max_connections=self._pool_size, max_keepalive_connections=self._pool_size
        )
        hooks = {
            "request": [requests.hook(url)] if requests else [],
            "response": [
                redirect_guard(resolve=proxied),
                bound_unasked_body,
                *([observe.observe] if observe else []),
                *([requests.observe] if requests else []),
            ],
        }
        settings: dict[str, Any] = {
            "auth": auth,
            "timeout": self.timeouts.httpx(),
            "headers": _HEADERS,
            "max_redirects": MAX_REDIRECTS,
            "event_hooks": hooks,
            "verify": self._tls,
        }
        # Every request on the lean wire (mirror/oci/wire.py), unless a proxy is in the
        # way: it connects to the address it judged, and reuses a connection only when
        # nothing unread waits on it. Blob bodies get a client of their own, with a pool
        # of their own, so a long copy never holds up a manifest request.
        if proxied:
            http = data = CookielessClient(limits=limits, **settings)
            self._http.append(http)
        else:
            http = CookielessClient(
                transport=WireTransport(self._tls, keep=self._pool_size), **settings
            )
            data = CookielessClient(
                transport=WireTransport(self._tls, keep=self._pool_size), **settings
            )
            self._http += [http, data]
        return RegistryClient(
            http,
            url,
            data_http=data,
            name=name,
            retry=retry,
            timeouts=self.timeouts,
            manifest_puts=pacer,
            requests=requests,
            breaker=breaker,
            confirm_heads=confirm_heads,
        )

    def close(self) -> None:
        for client in self._http:
            client.close()


# The table a deployment made (the template's CoordinationTable), for a config that
# names none: every task of the service then coordinates, whatever the config says.
COORDINATION_TABLE_ENV = "MIRROR_COORDINATION_TABLE"


def coordination_settings(config: Config) -> CoordinationSettings | None:
    """`coordination` of the config, else a table named by MIRROR_COORDINATION_TABLE."""
    if config.model.coordination is not None:
        return config.model.coordination
    name = os.environ.get(COORDINATION_TABLE_ENV, "")
    if not name:
        return None
    from pydantic import ValidationError

    try:
        return CoordinationSettings.model_validate({"dynamodb_table": name})
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{COORDINATION_TABLE_ENV}: {problem}") from None


def on_demand_queue(config: Config) -> str | None:
    """The queue builds report misses to; None without `on_demand`. ConfigError when
    on_demand names no queue and the deployment passed none."""
    settings = config.model.on_demand
    url = on_demand_queue_url(settings)
    if settings is not None and url is None:
        raise ConfigError(
            "on_demand names no queue",
            hint=f"add on_demand.queue_url, or set {ON_DEMAND_QUEUE_ENV}",
        )
    return url


def open_coordinator(config: Config, kind: str) -> Coordinator | None:
    """The coordination table for a process of `kind` (daemon, sync, copy), made sure of
    and this process announced in it; None when none is configured."""
    settings = coordination_settings(config)
    if settings is None:
        return None
    return Coordinator.open(
        settings.dynamodb_table,
        config_region(config),
        kind=kind,
        lease_seconds=float(settings.lease_seconds),
    )
