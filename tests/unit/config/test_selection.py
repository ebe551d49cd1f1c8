"""Tag rules pick release versions from the upstream tag list."""

import pytest

from mirror.config.selection import parse_semver_range, select_tags

TAGS = ["1.6.0", "v1.7.0", "1.7.1", "1.8", "2.0.0", "2.1.0-rc.1", "1.8-alpine", "latest", "3"]


def test_semver_range_selects_release_versions_only():
    assert select_tags(TAGS, semver_range=">=1.7.0 <2") == ["1.8", "1.7.1", "v1.7.0"]


def test_latest_n_takes_the_highest_versions():
    assert select_tags(TAGS, latest=2) == ["3", "2.0.0"]


def test_rules_combine():
    assert select_tags(TAGS, semver_range=">=1.7.0, <2.0.0", latest=1) == ["1.8"]


def test_regex_alone_keeps_upstream_order_and_allows_suffixes():
    assert select_tags(TAGS, regex=r"1\.8.*") == ["1.8", "1.8-alpine"]


def test_regex_must_match_the_whole_tag():
    assert select_tags(["1.8-alpine", "x1.8"], regex=r"1\.8-alpine") == ["1.8-alpine"]


@pytest.mark.parametrize("bad", ["~1.2", ">=x", "", ">= 1.2.3.4"])
def test_bad_ranges_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_semver_range(bad)


# A slice of Docker Hub's python and node tag lists.
PYTHON = [
    "3.13-slim", "3.13.1-slim", "3.13-slim-bookworm", "3.12-slim", "3.12.8-slim",
    "3.11-slim", "3.10-slim", "3.14.0a3-slim", "3-slim", "slim", "3.13", "3.13-alpine",
]  # fmt: skip
NODE = ["22-alpine", "22.12-alpine", "20-alpine", "18-alpine", "23-alpine", "22", "lts-alpine"]


def test_a_variant_rule_picks_the_newest_minor_slim_tags_with_the_version_compared_as_a_version():
    picked = select_tags(
        PYTHON, regex=r"\d+\.\d+-slim", variant="slim", semver_range=">=3.11", latest=3
    )
    assert picked == ["3.13-slim", "3.12-slim", "3.11-slim"]


def test_a_variant_is_matched_exactly_and_a_pre_release_version_never_qualifies():
    picked = select_tags(PYTHON, variant="slim", semver_range=">=3.11")
    assert "3.13-slim-bookworm" not in picked and "3.14.0a3-slim" not in picked
    assert picked == ["3.13.1-slim", "3.13-slim", "3.12.8-slim", "3.12-slim", "3.11-slim"]
    assert select_tags(PYTHON, variant="slim-bookworm", latest=5) == ["3.13-slim-bookworm"]


def test_node_alpine_majors():
    picked = select_tags(NODE, regex=r"\d+-alpine", variant="alpine", latest=3)
    assert picked == ["23-alpine", "22-alpine", "20-alpine"]


def test_without_a_variant_suffixed_tags_stay_out_of_version_rules():
    assert select_tags(PYTHON, latest=1) == ["3.13"]
