"""Resolving entries into copy jobs: an entry that cannot be one fails alone."""

from types import SimpleNamespace

from mirror.config import load_config
from mirror.engine.naming import pin_tag
from mirror.engine.sync import resolve_jobs
from mirror.oci.grammar import is_tag

LONG = "org/" + "a" * 240


def test_a_name_too_long_for_the_target_fails_its_entry_and_the_others_resolve(tmp_path):
    path = tmp_path / "mirror.yaml"
    path.write_text(
        "version: 1\ntarget: {kind: registry, registry_url: 'http://127.0.0.1:5002'}\n"
        f"images:\n  - {LONG}:1\n  - nginx:1.16\n"
    )
    clients = SimpleNamespace(target_registry="127.0.0.1:5002")

    resolved = resolve_jobs(load_config(path), clients)  # type: ignore[arg-type]

    assert [str(j.source) for j in resolved.jobs] == ["docker.io/library/nginx:1.16"]
    (failure,) = resolved.failures
    assert failure.error is not None and failure.error.code == "INVALID_TARGET_NAME"
    assert "repository_prefix" in failure.error.hint


def test_a_sha512_pin_gets_a_valid_tag():
    tag = pin_tag("sha512:" + "b" * 128)
    assert is_tag(tag) and tag.startswith("pin-sha512-")
