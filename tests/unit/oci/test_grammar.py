"""The OCI grammar at the boundary: what a registry or a lock may call a tag or digest."""

import pytest

from mirror.errors import BadReferenceError, InvalidUpstreamDataError
from mirror.oci.grammar import is_digest, is_host, is_repository, is_tag, require_reference
from mirror.oci.reference import Reference, parse_reference, registry_alias

SHA256 = "sha256:" + "a" * 64


@pytest.mark.parametrize("tag", ["latest", "1.27", "v1.7.0-rc.1", "_x", "A" * 128, "3.12-slim"])
def test_valid_tags(tag):
    assert is_tag(tag)


@pytest.mark.parametrize(
    "tag",
    ["", ".x", "-x", "a" * 129, "1.0\n", "a b", "a/b", "..", "$(id)", "a'b", "\uff11", "é", "a:b"],
)
def test_tags_outside_the_grammar(tag):
    assert not is_tag(tag)


@pytest.mark.parametrize(
    ("digest", "valid"),
    [
        (SHA256, True),
        ("sha512:" + "b" * 128, True),
        ("sha256:" + "A" * 64, False),  # uppercase hex
        ("sha256:" + "a" * 63, False),
        ("sha512:" + "b" * 64, False),  # the wrong length for the algorithm
        ("md5:" + "a" * 32, False),  # not a registered algorithm
        (SHA256 + "\n", False),
        ("sha512:aa/../../x", False),
    ],
)
def test_digests_are_registered_algorithms_with_their_exact_length(digest, valid):
    assert is_digest(digest) is valid


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("library/nginx", True),
        ("a/b__c/d-e.f", True),
        ("a/../b", False),
        ("A/b", False),
        ("a//b", False),
        ("a/b\n", False),
        ("a" * 256, False),
    ],
)
def test_repository_names(name, valid):
    assert is_repository(name) is valid


@pytest.mark.parametrize("host", ["quay.io", "127.0.0.1:5000", "[::1]:5000", "localhost"])
def test_hosts(host):
    assert is_host(host)


@pytest.mark.parametrize("host", ["a b", "a/b", "-a.io", "a.io:", "a.io:123456", "$(id).io"])
def test_not_hosts(host):
    assert not is_host(host)


def test_a_registry_value_outside_the_grammar_is_refused_with_an_escaped_sample():
    with pytest.raises(InvalidUpstreamDataError) as caught:
        require_reference("1.0\n\x1b[31m", "quay.io: manifest")
    assert caught.value.code == "INVALID_UPSTREAM_DATA"
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message


@pytest.mark.parametrize(
    "text",
    ["nginx:1.0\nx", "nginx:\uff11", f"nginx@{SHA256}\nx", "nginx@md5:" + "a" * 32, "a/../b:1"],
)
def test_the_config_uses_the_same_grammar(text):
    with pytest.raises(BadReferenceError):
        parse_reference(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tag", "a b"), ("tag", "../x"), ("digest", "sha512:aa/.."), ("repository", "a/../b")],
)
def test_a_reference_cannot_hold_a_value_outside_the_grammar(field, value):
    parts = {"registry": "docker.io", "repository": "library/nginx", "tag": "1", **{field: value}}
    with pytest.raises(ValueError):
        Reference(**parts)


def test_a_registry_with_a_port_or_an_ipv6_address_gets_a_valid_alias():
    assert registry_alias("127.0.0.1:5000") == "127.0.0.1-5000"
    assert is_repository(registry_alias("[::1]:5000"))
