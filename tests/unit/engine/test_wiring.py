"""How the clients are built: how fast each upstream is asked, how long a registry that
refuses connections is waited for."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from mirror.config import load_config
from mirror.engine.wiring import ADDRESS_REQUEST_RATES, Clients
from mirror.errors import UnavailableError
from mirror.oci.retry import RetryPolicy


def clients(tmp_path: Path, registries: str, coordinator: object = None) -> Clients:
    path = tmp_path / "mirror.yaml"
    path.write_text(
        "version: 1\ntarget: {kind: registry, registry_url: 'http://127.0.0.1:9'}\n"
        f"registries:\n{textwrap.indent(textwrap.dedent(registries), '  ')}"
        "images: [nginx:1.27]\n"
    )
    return Clients(load_config(str(path)), coordinator=coordinator)  # type: ignore[arg-type]


def rates(built: Clients, registry: str) -> list[float | None]:
    pacers = [m.client.request_pacer for m in built.upstream(registry).members]
    assert all(p is not None for p in pacers)
    return [p.rate for p in pacers if p is not None]


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    for name in ("A_USER", "A_TOKEN", "B_USER", "B_TOKEN"):
        monkeypatch.setenv(name, "x")


POOL = """\
credentials:
  - {username_env: A_USER, password_env: A_TOKEN}
  - {username_env: B_USER, password_env: B_TOKEN}
"""


def test_docker_hub_at_its_own_endpoint_is_paced_below_its_abuse_limit_for_the_whole_pool(
    tmp_path,
):
    built = clients(tmp_path, "docker.io:\n" + textwrap.indent(POOL, "  "))
    pacers = {id(m.client.request_pacer) for m in built.upstream("docker.io").members}
    assert len(pacers) == 1  # one address, whichever account asks
    assert rates(built, "docker.io") == [ADDRESS_REQUEST_RATES["docker.io"]] * 2
    assert ADDRESS_REQUEST_RATES["docker.io"] * 60 < 1000  # "thousands of requests per minute"


def test_docker_hub_through_a_proxy_is_paced_only_when_configured(tmp_path):
    assert rates(clients(tmp_path, "docker.io: {url: 'http://127.0.0.1:9'}\n"), "docker.io") == [
        None
    ]
    configured = clients(
        tmp_path, "docker.io: {url: 'http://127.0.0.1:9', requests_per_second: 50}\n"
    )
    assert rates(configured, "docker.io") == [50]


def test_a_configured_rate_is_the_registrys_not_each_credentials(tmp_path):
    built = clients(tmp_path, "quay.io:\n  requests_per_second: 4\n" + textwrap.indent(POOL, "  "))
    members = built.upstream("quay.io").members
    assert members[0].client.request_pacer is members[1].client.request_pacer
    assert rates(built, "quay.io") == [4, 4]


def test_public_ecr_paces_each_credential_at_its_documented_rate(tmp_path):
    built = clients(tmp_path, "public.ecr.aws:\n" + textwrap.indent(POOL, "  "))
    assert rates(built, "public.ecr.aws") == [10.0, 10.0]
    assert rates(clients(tmp_path, "{}\n"), "public.ecr.aws") == [1.0]


class Shared:
    """A coordinator's surface as the clients use it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []
        self.ledger = self

    def quota(self, registry: str, counted_as: str) -> None:
        raise AssertionError("no figures were seen: nothing is taken from the ledger")

    def shared_rate(self, registry: str, rate: float) -> str:
        self.asked.append((registry, rate))
        return f"shared {registry}"


def test_with_coordination_a_registrys_rate_is_shared_with_the_other_processes(tmp_path):
    coordinator = Shared()
    built = clients(tmp_path, "quay.io: {requests_per_second: 8}\n", coordinator)
    (pacer,) = [m.client.request_pacer for m in built.upstream("quay.io").members]
    assert pacer is not None and pacer.shared == "shared quay.io"
    assert coordinator.asked == [("quay.io", 8)]
    built.upstream("ghcr.io")  # no rate to share: unpaced, nothing asked
    assert coordinator.asked == [("quay.io", 8)]


def test_a_registry_refusing_every_connection_is_given_up_on_after_timeouts_unreachable(
    tmp_path,
):
    path = tmp_path / "mirror.yaml"
    path.write_text(
        "version: 1\ntarget: {kind: registry, registry_url: 'http://127.0.0.1:9'}\n"
        "registries: {quay.io: {url: 'http://127.0.0.1:9'}}\n"  # nothing listens on 9
        "timeouts: {unreachable: 1s}\nimages: [quay.io/team/app:1]\n"
    )
    built = Clients(load_config(str(path)), RetryPolicy(initial_wait=0.05))
    upstream = built.upstream("quay.io").members[0].client
    for client, code in ((built.target, "TARGET_UNAVAILABLE"), (upstream, "UPSTREAM_UNAVAILABLE")):
        started = time.monotonic()
        with pytest.raises(UnavailableError) as refused:
            client.head_manifest("team/app", "1")
        assert refused.value.code == code
        assert time.monotonic() - started < 5  # given up after 1 s, not the default 10 s
