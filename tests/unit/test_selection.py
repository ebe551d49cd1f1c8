"""Tag rules pick release versions from the upstream tag list."""

import pytest

from mirror.selection import parse_semver_range, select_tags

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
