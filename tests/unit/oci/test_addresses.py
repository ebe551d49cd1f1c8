"""Hosts a registry may send mirror to are judged by the addresses they stand for."""

from __future__ import annotations

import httpx
import pytest

from mirror.errors import InvalidUpstreamDataError
from mirror.oci.addresses import redirect_guard, refused_host
from mirror.oci.auth import check_realm

METADATA_SPELLINGS = [
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "::ffff:a9fe:a9fe",
    "2852039166",
    "0xa9fea9fe",
    "169.254.43518",
    "0251.0376.0251.0376",
    "169.254.169.254.",
    "fd00:ec2::254",
    "metadata.google.internal",
    "169.254.170.2",
]
LOOPBACK_SPELLINGS = ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "127.0.0.1.1"]


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_every_spelling_of_the_metadata_service_is_refused(host):
    assert refused_host(host) is not None
    literal = f"[{host}]" if ":" in host and not host.startswith("[") else host
    with pytest.raises(InvalidUpstreamDataError):
        check_realm(f"http://{literal}/token", httpx.URL("http://127.0.0.1:5000"))


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_a_number_not_written_as_a_dotted_quad_is_refused_whatever_it_means(host):
    assert refused_host(host) == "a numeric address not written as a dotted quad"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "auth.docker.io", "localhost"])
def test_ordinary_hosts_pass(host):
    assert refused_host(host, resolve=False) is None


def test_a_name_that_resolves_to_a_forbidden_address_is_refused(monkeypatch):
    def resolve(host, *_args, **_kwargs):
        return [(2, 1, 6, "", ("169.254.169.254", 0))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)
    assert "what evil.test resolves to" in (refused_host("evil.test") or "")


def test_a_redirect_to_the_metadata_service_is_not_followed():
    request = httpx.Request("GET", "http://127.0.0.1:5000/v2/library/nginx/blobs/sha256:aa")
    response = httpx.Response(
        307, headers={"Location": "http://2852039166/latest/meta-data/"}, request=request
    )
    with pytest.raises(InvalidUpstreamDataError) as refused:
        redirect_guard(resolve=True)(response)
    assert "not followed" in str(refused.value)


def test_on_the_wire_a_redirect_to_a_name_costs_no_lookup_of_its_own(monkeypatch):
    """The wire resolves and judges at connect; the guard in front of it only reads."""

    def no_lookup(*_args, **_kwargs):
        raise AssertionError("looked up")

    monkeypatch.setattr("socket.getaddrinfo", no_lookup)
    request = httpx.Request("GET", "http://127.0.0.1:5000/v2/library/nginx/blobs/sha256:aa")
    to_cdn = httpx.Response(307, headers={"Location": "https://cdn.test/x"}, request=request)
    redirect_guard(resolve=False)(to_cdn)  # followed; the transport judges cdn.test
    to_number = httpx.Response(307, headers={"Location": "http://2852039166/"}, request=request)
    with pytest.raises(InvalidUpstreamDataError):
        redirect_guard(resolve=False)(to_number)
