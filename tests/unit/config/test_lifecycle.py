"""The default lifecycle policy is one ECR accepts, and a user's file is held to ECR's
documented rules before anything is sent."""

import pytest

from mirror.config.lifecycle import (
    DEFAULT_POLICY,
    MIRROR_DEFAULTS,
    can_archive,
    validate_policy,
)
from tests.support.lifecycle_cases import ACCEPTED, REFUSED, rule


def test_the_default_archives_untagged_images_by_last_pull_then_expires_them_from_archive():
    archive, expire = DEFAULT_POLICY["rules"]
    assert archive["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePulled",
        "countUnit": "days",
        "countNumber": 30,
    }
    assert archive["action"] == {"type": "transition", "targetStorageClass": "archive"}
    assert expire["selection"]["storageClass"] == "archive"
    assert expire["selection"]["countType"] == "sinceImageTransitioned"
    assert expire["selection"]["countNumber"] == 90
    assert expire["action"] == {"type": "expire"}
    assert all(r["selection"]["tagStatus"] == "untagged" for r in DEFAULT_POLICY["rules"])
    assert validate_policy(DEFAULT_POLICY) == []
    assert can_archive(DEFAULT_POLICY)


def test_earlier_defaults_are_still_recognised_as_mirrors_own():
    previous, oldest = MIRROR_DEFAULTS[1:]
    assert previous["rules"][0]["selection"]["countType"] == "sinceImagePulled"
    assert validate_policy(previous)  # ECR refuses it: it is replaced wherever it stands
    assert oldest["rules"][0]["selection"]["countNumber"] == 14


@pytest.mark.parametrize(("why", "documented", "policy"), REFUSED, ids=[c[0] for c in REFUSED])
def test_validate_refuses_what_ecr_refuses(why, documented, policy):
    assert validate_policy(policy), f"{why} ({documented})"


@pytest.mark.parametrize(("why", "policy"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_validate_accepts_what_ecr_documents(why, policy):
    assert validate_policy(policy) == []


def test_every_problem_is_named_with_where_it_is():
    policy = {
        "rules": [
            rule(1, {"type": "expire"}, countType="sinceImagePulled", countNumber=3),
            rule(1, tagStatus="tagged"),
        ],
        "extra": True,
    }
    assert validate_policy(policy) == [
        "extra: not a lifecycle policy property",
        "rules[0].selection.countUnit: must be days with sinceImagePulled",
        "rules[0].action.type: sinceImagePulled allows only transition",
        "rules[1].selection: tagStatus tagged needs tagPrefixList or tagPatternList",
        "rulePriority values must be unique",
    ]


def test_a_policy_that_only_expires_never_archives():
    assert not can_archive({"rules": [rule()]})
    assert not can_archive(None)
