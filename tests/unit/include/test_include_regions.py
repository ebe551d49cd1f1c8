"""The CodeBuild include in a replicated mirror: each build pulls from its own Region's
replica, logs in to the Region of the host it logs in to, and falls back to the primary
for a digest the replica lacks yet."""

from __future__ import annotations

import subprocess

import pytest

from mirror.config import load_config
from mirror.include.buildspec import (
    Pull,
    render_build_context,
    render_commands,
    render_script,
    replica_registries,
)
from mirror.oci.reference import parse_reference
from tests.support.shims import Shims

PRIMARY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
IRELAND = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
TOKYO = "444455556666.dkr.ecr.ap-northeast-1.amazonaws.com"
PATH = "mirror/docker-hub/library/nginx@sha256:" + "a" * 64

CONFIG = f"""\
version: 1
target:
  kind: ecr
  registry: {PRIMARY}
  replicate_to:
    - region: eu-west-1
    - {{region: ap-northeast-1, account: "444455556666"}}
images:
  - nginx:1.16
"""


@pytest.fixture
def includes(tmp_path):
    path = tmp_path / "mirror.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    replicas = replica_registries(config, PRIMARY)
    pulls = [Pull(parse_reference("nginx:1.16"), PATH, ("nginx:1.16",))]
    fragment = tmp_path / "fragment.sh"
    fragment.write_text(
        "set -e\n" + "\n".join(render_commands(config, PRIMARY, pulls, replicas)) + "\n"
    )
    script = tmp_path / "pull.sh"
    script.write_text(render_script(config, PRIMARY, pulls, replicas))
    for include in (fragment, script):
        checked = subprocess.run(
            ["shellcheck", "-s", "sh", str(include)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout
    return {"fragment": fragment, "script": script}, Shims(tmp_path)


def logins(calls: list[list[str]]) -> list[tuple[str, str]]:
    """(Region asked for, host logged in to), in order."""
    regions = [
        c[c.index("--region") + 1] for c in calls if c[:3] == ["aws", "ecr", "get-login-password"]
    ]
    hosts = [c[-1] for c in calls if c[:2] == ["docker", "login"]]
    return list(zip(regions, hosts, strict=True))


@pytest.mark.parametrize("kind", ["fragment", "script"])
@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", PRIMARY),
        ("eu-west-1", IRELAND),
        ("ap-northeast-1", TOKYO),
        ("sa-east-1", PRIMARY),
    ],
)
def test_each_build_pulls_from_its_regions_replica_and_logs_in_to_that_region(
    includes, kind, region, expected
):
    paths, shims = includes

    done = shims.run("sh", paths[kind], env={"AWS_REGION": region})

    assert done.returncode == 0, done.stderr
    calls = shims.calls()
    assert logins(calls) == [(expected.split(".")[3], expected)]
    pulls = [c[-1] for c in calls if c[:2] == ["docker", "pull"]]
    assert pulls == [f"{expected}/{PATH}"]
    assert ["docker", "tag", f"{expected}/{PATH}", "nginx:1.16"] in calls


@pytest.mark.parametrize("kind", ["fragment", "script"])
def test_a_replica_that_lacks_the_digest_falls_back_to_the_primary(includes, kind):
    paths, shims = includes

    done = shims.run("sh", paths[kind], env={"AWS_REGION": "eu-west-1", "SHIM_MISSING_ON": IRELAND})

    assert done.returncode == 0, done.stderr
    calls = shims.calls()
    assert logins(calls)[:2] == [("eu-west-1", IRELAND), ("us-east-1", PRIMARY)]
    assert ["docker", "pull", "--quiet", f"{PRIMARY}/{PATH}"] in calls
    # The builder knows only what it pulled: the name is tagged from the primary's reference.
    tags = [c for c in calls if c[:2] == ["docker", "tag"]]
    assert tags == [["docker", "tag", f"{PRIMARY}/{PATH}", "nginx:1.16"]]
    assert "replication lags" in done.stderr
    assert "No such image" not in done.stderr


@pytest.mark.parametrize("kind", ["fragment", "script"])
def test_a_digest_that_neither_registry_has_fails_the_build_naming_it(includes, kind):
    paths, shims = includes
    env = {"AWS_REGION": "us-east-1", "SHIM_MISSING_ON": PRIMARY}

    done = shims.run("sh", paths[kind], env=env)

    assert done.returncode == 1
    assert f"could not pull {PRIMARY}/{PATH}" in done.stderr
    assert not [c for c in shims.calls() if c[:2] == ["docker", "tag"]]


@pytest.fixture
def many(tmp_path):
    """A script and a fragment pulling three images (the script in parallel)."""
    path = tmp_path / "mirror.yaml"
    path.write_text(CONFIG + "  - redis:7\n  - python:3.12\n")
    config = load_config(path)
    replicas = replica_registries(config, PRIMARY)
    pulls = [
        Pull(parse_reference(name), f"mirror/docker-hub/library/{name.split(':')[0]}"
             f"@sha256:{n * 64}", (name,))
        for name, n in (("nginx:1.16", "a"), ("redis:7", "b"), ("python:3.12", "c"))
    ]  # fmt: skip
    fragment = tmp_path / "fragment.sh"
    fragment.write_text(
        "set -e\n" + "\n".join(render_commands(config, PRIMARY, pulls, replicas)) + "\n"
    )
    script = tmp_path / "pull.sh"
    script.write_text(render_script(config, PRIMARY, pulls, replicas))
    return {"fragment": fragment, "script": script}, Shims(tmp_path)


@pytest.mark.parametrize("kind", ["fragment", "script"])
def test_one_login_per_registry_however_many_images_fall_back(many, kind):
    paths, shims = many

    done = shims.run("sh", paths[kind], env={"AWS_REGION": "eu-west-1", "SHIM_MISSING_ON": IRELAND})

    assert done.returncode == 0, done.stderr
    assert logins(shims.calls()) == [("eu-west-1", IRELAND), ("us-east-1", PRIMARY)]
    assert done.stderr.count("replication lags") == 3


@pytest.mark.parametrize("kind", ["fragment", "script"])
def test_a_failed_pull_says_what_failed_and_blames_no_replication(includes, kind):
    paths, shims = includes

    done = shims.run("sh", paths[kind], env={"AWS_REGION": "us-east-1", "SHIM_MISSING_ON": PRIMARY})

    assert done.returncode == 1
    assert f"docker pull {PRIMARY}/{PATH} failed: manifest unknown" in done.stderr
    assert "replication lags" not in done.stderr


def test_a_failed_pull_from_replica_and_primary_names_both_answers(includes):
    paths, shims = includes
    env = {"AWS_REGION": "eu-west-1", "SHIM_MISSING_ON": f"{IRELAND},{PRIMARY}"}

    done = shims.run("sh", paths["script"], env=env)

    assert done.returncode == 1
    assert (
        f"docker pull failed from {IRELAND} (manifest unknown) and from {PRIMARY} "
        "(manifest unknown)" in done.stderr
    )
    assert "replication lags" not in done.stderr


def test_the_build_context_form_falls_back_to_the_primary_like_the_others(tmp_path):
    path = tmp_path / "mirror.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    pulls = [Pull(parse_reference("nginx:1.16"), PATH, ("nginx:1.16",))]
    snippet = tmp_path / "mirror-contexts.sh"
    snippet.write_text(
        render_build_context(config, PRIMARY, pulls, replica_registries(config, PRIMARY))
    )
    checked = subprocess.run(["shellcheck", "-s", "sh", str(snippet)], capture_output=True)
    assert checked.returncode == 0, checked.stdout
    shims = Shims(tmp_path)
    runner = tmp_path / "run.sh"
    runner.write_text(f'. {snippet}\nprintf "%s\\n" $MIRROR_BUILD_CONTEXTS\n')

    done = shims.run("sh", runner, env={"AWS_REGION": "eu-west-1", "SHIM_MISSING_ON": IRELAND})

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--build-context", f"nginx:1.16=docker-image://{PRIMARY}/{PATH}"]
    assert logins(shims.calls()) == [("eu-west-1", IRELAND), ("us-east-1", PRIMARY)]
    assert f"{IRELAND} lacks {PATH} (replication lags)" in done.stderr
