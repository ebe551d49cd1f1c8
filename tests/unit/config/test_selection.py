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


@pytest.mark.parametrize("bad", ["abc", "", ">= 1.2.3.4", "^^1", "~>1.2"])
def test_bad_ranges_are_rejected_with_how_to_write_one(bad):
    with pytest.raises(ValueError, match=r"npm range such as|empty semver range"):
        parse_semver_range(bad)


def test_not_equal_is_refused_with_the_equivalent():
    with pytest.raises(ValueError, match=r"'<1.2.0 \|\| >1.2.0'"):
        parse_semver_range("!=1.2.0")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("^20 || ^22", ["22.12.1", "22.11.0", "20.18.1", "20.17.0"]),
        ("~22.11", ["22.11.0"]),
        (">=20 <23", ["22.12.1", "22.11.0", "20.18.1", "20.17.0"]),
        ("20.x", ["20.18.1", "20.17.0"]),
        (">=20, <21", ["20.18.1", "20.17.0"]),  # commas still mean "and"
    ],
)
def test_npm_ranges(written, expected):
    tags = ["18.20.5", "20.17.0", "20.18.1", "22.11.0", "22.12.1", "23.4.0"]
    assert select_tags(tags, semver_range=written) == expected


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


# node's tags, as Docker Hub lists them (a slice): releases and the floating tags of lines.
NODE_TAGS = [
    f"{version}-{variant}"
    for version in (
        "18.20.5", "18", "20.17.0", "20.18.0", "20.18.1", "20.18", "20.17", "20",
        "22.11.0", "22.12.0", "22.12.1", "22.12", "22.11", "22", "23.4.0", "23",
    )
    for variant in ("alpine", "slim", "bookworm")
]  # fmt: skip


def test_the_two_newest_minors_of_node_20_and_22_alpine_and_slim_in_one_rule():
    picked = select_tags(
        NODE_TAGS, semver_range="^20 || ^22", variant=["alpine", "slim"], latest=2, per="major"
    )
    assert picked == [
        "22.12.1-alpine", "22.11.0-alpine", "20.18.1-alpine", "20.17.0-alpine",
        "22.12.1-slim", "22.11.0-slim", "20.18.1-slim", "20.17.0-slim",
    ]  # fmt: skip


def test_without_per_latest_counts_versions_so_two_patches_of_one_minor_win():
    picked = select_tags(NODE_TAGS, semver_range=">=20 <23", variant="alpine", latest=2)
    assert picked == ["22.12.1-alpine", "22.12.0-alpine"]


def test_per_minor_keeps_the_newest_patches_of_each_minor_line():
    picked = select_tags(NODE_TAGS, semver_range="^22", variant="alpine", latest=1, per="minor")
    assert picked == ["22.12.1-alpine", "22.11.0-alpine"]


def test_floating_adds_the_floating_tags_of_the_chosen_lines_where_they_exist():
    picked = select_tags(
        NODE_TAGS, semver_range="^20 || ^22", variant="alpine", latest=1, per="major",
        floating=True,
    )  # fmt: skip
    assert picked == [
        "22.12.1-alpine", "20.18.1-alpine", "22.12-alpine", "22-alpine", "20.18-alpine",
        "20-alpine",
    ]  # fmt: skip


def test_under_per_a_floating_tag_is_no_release():
    # `22-alpine` would read as 22.0.0 and `22.12-alpine` as 22.12.0: neither is a release
    picked = select_tags(NODE_TAGS, variant="alpine", latest=1, per="minor")
    assert "22.12-alpine" not in picked and "22-alpine" not in picked
