"""A bad config is exit 2 with file, line and key; a good one folds defaults into images."""

from pathlib import Path

import pytest

from mirror.config import load_config
from mirror.console.cli import main
from mirror.errors import ConfigError
from mirror.oci.reference import parse_reference

GOOD = """\
version: 1
target:
  kind: registry
  registry_url: http://127.0.0.1:5002
defaults:
  platforms: [linux/amd64]
images:
  - nginx:1.16
  - image: python
    tags: ["3.12-slim", "3.13-slim"]
    platforms: all
  - image: quay.io/prometheus/node-exporter
    tags: {semver: ">=1.7.0", latest: 3}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mirror.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def test_defaults_are_folded_into_each_image(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    nginx, python, exporter = config.images
    assert str(nginx.source) == "docker.io/library/nginx:1.16"
    assert str(nginx.platforms) == "linux/amd64" and nginx.line == 8
    assert python.tags == ("3.12-slim", "3.13-slim") and python.platforms is None
    assert exporter.rule is not None and exporter.rule.latest == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    tags: [", "    tgas: ["), "mirror.yaml:10: images[1].tgas: unknown key 'tgas'"),
        (("  kind: registry", "  kind: registry\n  colour: red"), ":4: target.colour: unknown key"),
        (
            ("latest: 3", "latest: three"),
            ":13: images[2].tags.latest: must be a whole number",
        ),
        (("  - nginx:1.16", "  - Nginx:1.16"), ":8: images[0]: invalid repository"),
        (('semver: ">=1.7.0"', 'semver: "~>1.2"'), ":13: images[2].tags.semver: invalid semver"),
        (("[linux/amd64]", "[linux]"), ":6: defaults.platforms: invalid platform 'linux'"),
        (("version: 1", "version: 2"), ":1: version: must be 1, not a number 2"),
        (
            ("  kind: registry", "  kind: ecr\n  credentials: {username_env: A, password_env: B}"),
            ":2: target: kind: ecr takes no credentials",
        ),
        (
            ("  kind: registry", "  kind: registry\n  repository: {scan_on_push: false}"),
            ":2: target: region, repository and replicate_to settings apply to kind: ecr only",
        ),
        (
            (
                "  kind: registry",
                "  kind: ecr\n  repository: {tag_mutability: IMMUTABLE_WITH_EXCLUSION}",
            ),
            ":4: target.repository: IMMUTABLE_WITH_EXCLUSION needs tag_mutability_exclusions",
        ),
        (
            ("  platforms: [linux/amd64]", "  immutable_tags: ['v 1']"),
            ":6: defaults.immutable_tags: invalid tag pattern 'v 1'",
        ),
        (("    platforms: all", "    refresh: 0s"), ":11: images[1].refresh: refresh must be"),
        (('"3.13-slim"]', '"3.13-slim\\n"]'), ":10: images[1].tags: invalid tag '3.13-slim\\n'"),
        (('"3.13-slim"]', '"3.\uff11"]'), ":10: images[1].tags: invalid tag '3.\uff11'"),
        (("images:", "timeouts: {image: 0s}\nimages:"), ":7: timeouts.image: a timeout must be"),
        (
            ("images:", "timeouts: {unreachable: 0s}\nimages:"),
            ":7: timeouts.unreachable: a timeout must be at least 1s",
        ),
        (
            ("  kind: registry\n  registry_url: http://127.0.0.1:5002", "  region: us-east-1$(id)"),
            ":3: target.region: invalid AWS Region",
        ),
        (
            ("images:", "timeouts: {metadata: 2}\nimages:"),
            ":7: timeouts.metadata: must be text",
        ),
        (("    platforms: all", "    refresh: soon"), ":11: images[1].refresh: invalid duration"),
        (("images:", "prune: {}\nimages:"), ":7: prune: prune works through the ECR API"),
        (
            ("    platforms: all", "    artifacts: {include: [signatures]}"),
            ":11: images[1].artifacts.include: unknown artifact kind 'signatures'",
        ),
        (
            ("images:", "events: [{webhook: {url: x}, sns: {topic_arn: y}}]\nimages:"),
            ":7: events[0].webhook.url: write an http(s) URL",
        ),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, change, expected):
    message = error_of(tmp_path, GOOD.replace(*change))
    assert expected in message
    assert str(tmp_path / "mirror.yaml") in message


def test_immutable_tags_and_refresh_reach_each_image(tmp_path):
    text = GOOD.replace("  platforms: [linux/amd64]", "  immutable_tags: ['v*.*.*']")
    text = text.replace("    platforms: all", "    refresh: 1h\n    immutable_tags: []")
    nginx, python, exporter = load_config(write(tmp_path, text)).images

    assert nginx.immutable(nginx.source.with_tag("v1.2.3"))
    assert not nginx.immutable(nginx.source)  # 1.16 moves with patch releases
    assert not python.immutable(python.source.with_tag("v1.2.3"))  # [] overrides defaults
    assert python.refresh == 3600 and nginx.refresh is None
    pinned = parse_reference("nginx@sha256:" + "a" * 64)
    assert exporter.immutable(pinned)


def test_an_empty_image_list_is_an_error(tmp_path):
    text = GOOD[: GOOD.index("images:")] + "images: []\n"
    assert ":7: images: must have at least 1, and has none" in error_of(tmp_path, text)


def test_invalid_yaml_names_the_line(tmp_path):
    text = "version: 1\ntarget:\n  kind: registry\n    registry_url: x\n"
    assert "mirror.yaml:4: invalid YAML: mapping values are not allowed" in error_of(tmp_path, text)


def test_duplicate_keys_are_an_error(tmp_path):
    assert "invalid YAML" in error_of(
        tmp_path, GOOD.replace("version: 1", "version: 1\nversion: 1")
    )


def test_cli_exits_2_and_touches_nothing_on_a_bad_config(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("tags: [", "tgas: ["))
    assert main(["sync", "--config", str(path)]) == 2
    assert "unknown key 'tgas'" in capsys.readouterr().err


def test_missing_credentials_variables_are_a_config_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NOPE_USER", raising=False)
    text = GOOD.replace(
        "  registry_url: http://127.0.0.1:5002",
        "  registry_url: http://127.0.0.1:5002\n"
        "  credentials: {username_env: NOPE_USER, password_env: NOPE_PASS}",
    )
    assert main(["sync", "--config", str(write(tmp_path, text))]) == 2
    assert "NOPE_USER" in capsys.readouterr().err


def test_a_missing_config_file_says_how_to_point_at_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIRROR_CONFIG", raising=False)
    assert main(["validate"]) == 2
    assert "--config" in capsys.readouterr().err


def test_validate_prints_the_resolved_image_list(tmp_path, capsys):
    assert main(["validate", "--config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert (
        "docker.io/library/nginx:1.16 -> 127.0.0.1:5002/mirror/docker-hub/library/nginx:1.16" in out
    )
    assert "{semver >=1.7.0, latest 3}" in out


def test_the_shipped_demo_config_is_valid(capsys):
    demo = Path(__file__).resolve().parents[3] / "config" / "demo.yaml"
    assert main(["validate", "--config", str(demo)]) == 0


def test_a_misspelled_key_gets_a_suggestion(tmp_path):
    text = GOOD.replace('tags: ["3.12-slim", "3.13-slim"]', 'tgas: ["3.12-slim"]')
    error = error_of(tmp_path, text)
    assert "mirror.yaml:10: images[1].tgas: unknown key 'tgas'; did you mean 'tags'?" in error


def test_the_same_image_twice_is_an_error_naming_both_lines(tmp_path):
    text = GOOD.replace("  - nginx:1.16\n", "  - nginx:1.16\n  - docker.io/library/nginx:1.16\n")
    error = error_of(tmp_path, text)
    assert "mirror.yaml:9: images: docker.io/library/nginx:1.16 is listed twice" in error
    assert "first at line 8 (remove one of the two entries)" in error


def test_a_region_that_does_not_exist_is_named_with_the_closest_one(tmp_path):
    text = "version: 1\ntarget:\n  kind: ecr\n  region: eu-wset-1\nimages: [nginx:1.16]\n"
    error = error_of(tmp_path, text)
    assert (
        "mirror.yaml:4: target.region: eu-wset-1 is not an AWS Region; did you mean eu-west-1?"
        in error
    )


def test_a_registries_key_no_image_uses_is_a_warning_with_a_guess(tmp_path):
    text = GOOD.replace(
        "defaults:", "registries:\n  quay:\n    rate_limit: {reserve: 1}\ndefaults:"
    )
    config = load_config(write(tmp_path, text))
    (warning,) = config.warnings
    assert "registries: no image comes from quay; did you mean quay.io?" in warning


@pytest.mark.parametrize("alias", ["index.docker.io", "registry-1.docker.io"])
def test_docker_hubs_other_names_as_a_registries_key_mean_docker_io(tmp_path, alias):
    text = GOOD.replace(
        "defaults:", f"registries:\n  {alias}:\n    rate_limit: {{reserve: 7}}\ndefaults:"
    )
    config = load_config(write(tmp_path, text))
    assert list(config.model.registries) == ["docker.io"]
    assert config.model.registries["docker.io"].rate_limit.reserve == 7
    assert config.warnings == ()  # nginx comes from it


def test_an_error_under_a_docker_hub_alias_names_the_line_it_is_written_on(tmp_path):
    text = GOOD.replace("defaults:", "registries:\n  index.docker.io:\n    urll: x\ndefaults:")
    error = error_of(tmp_path, text)
    assert "mirror.yaml:7: registries.docker.io.urll: unknown key 'urll'" in error


def test_validate_refuses_unset_credential_variables_as_sync_would(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HUB_USER", raising=False)
    monkeypatch.delenv("HUB_TOKEN", raising=False)
    credentials = (
        "registries:\n  docker.io:\n"
        "    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}\n"
    )
    path = write(tmp_path, GOOD.replace("defaults:", credentials + "defaults:"))

    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "registries.docker.io.credentials: environment variable(s) HUB_USER, HUB_TOKEN not set"
        in err
    )

    monkeypatch.setenv("HUB_USER", "ci-bot")
    monkeypatch.setenv("HUB_TOKEN", "dckr_pat_x")
    assert main(["validate", "--config", str(path), "--log-format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"valid": true' in out and "dckr_pat_x" not in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("version: 1", "version: 2"), "mirror.yaml:1: version: must be 1, not a number 2"),
        (
            ('tags: ["3.12-slim", "3.13-slim"]', "tags: 3.12-slim"),
            "mirror.yaml:10: images[1].tags: tags must be a list of tags such as",
        ),
        (
            ("registry_url: http://127.0.0.1:5002", "registry_url: 127.0.0.1:5002/v2"),
            "mirror.yaml:4: target.registry_url: write the endpoint as http(s)://host[:port]",
        ),
        (
            ("platforms: [linux/amd64]", "platforms: some"),
            "mirror.yaml:6: defaults.platforms: write `all` or a list of platforms",
        ),
        (("  - image: python\n", "  - imag: python\n"), "did you mean 'image'?"),
        (
            ("defaults:", "concurrency: {images: four}\ndefaults:"),
            "concurrency.images: must be a whole number, not text 'four'",
        ),
    ],
)
def test_schema_errors_are_in_our_words_on_the_right_key_and_line(tmp_path, change, expected):
    old, new = change
    error = error_of(tmp_path, GOOD.replace(old, new))
    assert expected in error
    assert "Input should" not in error and "Field required" not in error


def test_a_yaml_indentation_mistake_gets_a_hint(tmp_path):
    text = GOOD.replace("  - image: python\n    tags:", "  - image: python\n      tags:")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "mirror.yaml:10: invalid YAML" in str(caught.value)
    assert "indentation" in caught.value.hint


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("{'aws:owner': me}", "the aws: prefix is reserved for AWS"),
        (f"{{{'k' * 129}: v}}", "keys have 1 to 128 characters, values 256"),
        ("{k: " + "v" * 257 + "}", "keys have 1 to 128 characters, values 256"),
        ("{" + ", ".join(f"k{i}: v" for i in range(49)) + "}", "at most 48 tags"),
    ],
)
def test_repository_tags_ecr_would_refuse_are_a_config_error(tmp_path, tags, expected):
    text = GOOD.replace(
        "  kind: registry\n  registry_url: http://127.0.0.1:5002\n",
        f"  kind: ecr\n  region: us-east-1\n  repository:\n    tags: {tags}\n",
    )
    error = error_of(tmp_path, text)
    assert "mirror.yaml:6: target.repository.tags" in error and expected in error


def test_validate_advises_blob_mounting_for_several_ecr_repositories(tmp_path, capsys):
    text = GOOD.replace(
        "  kind: registry\n  registry_url: http://127.0.0.1:5002\n",
        "  kind: ecr\n  registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com\n",
    )
    assert main(["validate", "--config", str(write(tmp_path, text))]) == 0
    assert "advice: images in several repositories share layers" in capsys.readouterr().out
    assert main(["validate", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "advice:" not in capsys.readouterr().out  # not ECR: nothing to advise


ECR_UPSTREAM = """\
version: 1
target: {kind: ecr, registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com}
registries:
  444455556666.dkr.ecr.eu-west-1.amazonaws.com:
    mode: pull-through-cache
ROLE
images:
  - 444455556666.dkr.ecr.eu-west-1.amazonaws.com/team/app:1
"""


def test_another_ecr_registry_can_be_cached_with_a_role(tmp_path):
    role = "    role_arn: arn:aws:iam::123456789012:role/mirror-upstream"
    config = load_config(write(tmp_path, ECR_UPSTREAM.replace("ROLE", role)))
    settings = config.model.registries["444455556666.dkr.ecr.eu-west-1.amazonaws.com"]
    assert settings.role_arn == "arn:aws:iam::123456789012:role/mirror-upstream"
    error = error_of(tmp_path, ECR_UPSTREAM.replace("ROLE\n", ""))
    assert "with an IAM role it assumes: add role_arn" in error


@pytest.mark.parametrize(
    ("garbled", "expected"),
    [
        (GOOD.encode().replace(b"nginx", b"ng\xffinx"), "mirror.yaml:8: byte 0xff at column 7"),
        (GOOD.encode().replace(b"nginx", b"ng\x00inx"), "mirror.yaml:8: character #x0000"),
    ],
    ids=["not UTF-8", "a NUL"],
)
def test_a_garbled_config_is_a_config_error_naming_the_line_and_exit_2(
    tmp_path, capsys, garbled, expected
):
    path = tmp_path / "mirror.yaml"
    path.write_bytes(garbled)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value)
    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "internal error" not in err


def test_validate_reports_every_problem_at_once_each_on_its_own_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HUB_USER", raising=False)
    text = (
        "version: 1\n"
        "target:\n  kind: ecr\n  region: eu-wset-1\n"
        "registries:\n  docker.io:\n"
        "    credentials: {username_env: HUB_USER, password_env: HUB_USER}\n"
        "images:\n  - nginx:1.16\n  - docker.io/library/nginx:1.16\n"
    )
    path = write(tmp_path, text)

    assert main(["validate", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith(
        "mirror.yaml:4: target.region: eu-wset-1 is not an AWS Region; did you mean eu-west-1?"
    )
    assert ":10: images: docker.io/library/nginx:1.16 is listed twice" in lines[1]
    assert "registries.docker.io.credentials: environment variable(s) HUB_USER" in lines[2]
    assert all(line.startswith("mirror: ") and "\\n" not in line for line in lines)


def test_schema_errors_are_all_reported_each_on_its_own_line(tmp_path, capsys):
    text = GOOD.replace("latest: 3", "latest: three").replace("    tags: [", "    tgas: [")
    path = write(tmp_path, text)

    assert main(["validate", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[1].rsplit(":", 1)[-1] for line in lines] == ["10", "13"]
    assert "images[1].tgas: unknown key 'tgas'" in lines[0]
    assert "images[2].tags.latest: must be a whole number" in lines[1]


ON_DEMAND = """\
on_demand:
  queue_url: https://sqs.eu-west-1.amazonaws.com/111122223333/mirror-misses
  allow: [docker.io/library/*, quay.io/prometheus/*]
  tags: {semver: ">=1"}
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("https://sqs.eu-west-1.amazonaws.com/111122223333/mirror-misses", "mirror-misses"),
            ":8: on_demand.queue_url: invalid SQS queue URL 'mirror-misses': write https://sqs.",
        ),
        (
            ("allow: [docker.io/library/*, quay.io/prometheus/*]", "allow: ['redis']"),
            ":9: on_demand.allow: invalid image pattern 'redis': write registry/repository",
        ),
        (
            ("allow: [docker.io/library/*, quay.io/prometheus/*]", "allow: []"),
            ":9: on_demand.allow: must have at least 1",
        ),
        (
            ('tags: {semver: ">=1"}', 'tags: {semver: "~>banana"}'),
            ":10: on_demand.tags.semver: invalid semver range",
        ),
        (
            ('tags: {semver: ">=1"}', "max_new_per_day: 0"),
            ":10: on_demand.max_new_per_day: must be at least 1",
        ),
        (
            ('tags: {semver: ">=1"}', "allow_all: true"),
            ":10: on_demand.allow_all: unknown key 'allow_all'; did you mean 'allow'?",
        ),
    ],
)
def test_on_demand_mistakes_name_the_line_and_the_key(tmp_path, change, expected):
    text = GOOD.replace("images:", ON_DEMAND.replace(*change) + "images:")
    message = error_of(tmp_path, text)
    assert expected in message.replace(str(tmp_path / "mirror.yaml"), "")


def test_images_builds_asked_for_join_the_list_once(tmp_path):
    from mirror.config import with_added_images

    config = load_config(write(tmp_path, GOOD.replace("images:", ON_DEMAND + "images:")))
    added = with_added_images(
        config,
        ["docker.io/library/redis:7.4", "docker.io/library/nginx:1.16",  # nginx is listed
         "docker.io/library/python:3.12-slim",  # one of python's listed tags
         "x\\x1b[31m:1"],  # not a reference (the table is shared): left out
    )  # fmt: skip

    extra = added.images[len(config.images) :]
    assert [str(e.source) for e in extra] == ["docker.io/library/redis:7.4"]
    assert extra[0].platforms == config.images[0].platforms  # the defaults apply to it
    assert with_added_images(config, []) is config
