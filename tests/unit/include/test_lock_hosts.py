"""A lock names the registries the include logs in to: only the config's own are taken."""

from __future__ import annotations

import pytest

from mirror.config import load_config
from mirror.errors import ConfigError
from mirror.include.lock import check_lock_hosts

CONFIG = """\
version: 1
target:
  kind: ecr
  region: us-east-1
  replicate_to: [{region: eu-west-1}, {region: ap-northeast-1, account: "444455556666"}]
images: [nginx:1.16]
"""
PRIMARY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPLICAS = {
    "eu-west-1": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    "ap-northeast-1": "444455556666.dkr.ecr.ap-northeast-1.amazonaws.com",
}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mirror.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def test_the_configs_own_registry_and_replicas_are_taken(config, tmp_path):
    check_lock_hosts({"registry": PRIMARY, "replicas": REPLICAS}, config, tmp_path / "l.json")


@pytest.mark.parametrize(
    ("registry", "replicas", "named"),
    [
        ("123456789012.dkr.ecr.us-east-1.evil.test", {}, "not an ECR registry in us-east-1"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", {}, "not an ECR registry in us-east-1"),
        (PRIMARY, {"eu-west-1": "123456789012.dkr.ecr.eu-west-1.evil.test"}, "replica"),
        (PRIMARY, {"us-west-2": "123456789012.dkr.ecr.us-west-2.amazonaws.com"}, "replica"),
        (PRIMARY, {"ap-northeast-1": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"},
         "replica"),
    ],
    ids=["a look-alike host", "another Region", "a look-alike replica", "a Region not "
         "configured", "a replica in the wrong account"],
)  # fmt: skip
def test_a_host_the_config_never_named_is_refused(config, tmp_path, registry, replicas, named):
    with pytest.raises(ConfigError) as refused:
        check_lock_hosts({"registry": registry, "replicas": replicas}, config, tmp_path / "l.json")
    assert named in str(refused.value) and "mirror lock" in refused.value.hint
