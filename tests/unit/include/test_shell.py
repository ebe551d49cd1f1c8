"""Generated shell is built from words: hostile text stays one inert argument."""

import json
import subprocess
import sys

import pytest

from mirror.include.buildspec import Pull
from mirror.include.shell import Var, join, require_host, require_region
from mirror.oci.reference import parse_reference

HOSTILE = [
    "1.0'; touch PWNED; '",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a b",
    "x\ntouch PWNED",
    '"; touch PWNED; "',
    "\\",
    "*",
    "~",
    "-rf",
    "",
    "${HOME}",
]


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_every_hostile_word_reaches_the_command_exactly_and_runs_nothing(shell, tmp_path):
    printer = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    line = join([*printer, *HOSTILE, (Var("PREFIX"), "/a b$(touch PWNED)")])

    done = subprocess.run(
        [shell, "-c", line],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PREFIX": "p q", "PATH": "/usr/bin:/bin"},
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [*HOSTILE, "p q/a b$(touch PWNED)"]
    assert not (tmp_path / "PWNED").exists()


def test_hosts_and_regions_that_stand_unquoted_in_case_arms_are_checked():
    assert require_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    assert require_region("eu-west-1") == "eu-west-1"
    for value in ("a$(id)", "a`id`", 'a"b', "a b", "a\\b", "", "x;y"):
        with pytest.raises(ValueError):
            require_host(value)
        with pytest.raises(ValueError):
            require_region(value)
    with pytest.raises(ValueError):
        Var("A; rm")


@pytest.mark.parametrize(
    "path",
    ["mirror/a@sha256:" + "a" * 63, "mirror/a:1.0 b", "mirror/../a:1", "mirror/a:$(id)", "a"],
)
def test_a_pull_only_holds_a_grammar_checked_repository_path(path):
    with pytest.raises(ValueError):
        Pull(parse_reference("nginx:1.16"), path, ("nginx:1.16",))
