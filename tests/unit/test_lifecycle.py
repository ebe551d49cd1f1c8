"""The default lifecycle policy keeps every digest builds still pull."""

from mirror.lifecycle import DEFAULT_POLICY, MIRROR_DEFAULTS, validate_policy


def test_the_default_expires_untagged_images_by_last_pull_not_by_push():
    (rule,) = DEFAULT_POLICY["rules"]
    assert rule["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePulled",
        "countUnit": "days",
        "countNumber": 30,
    }
    assert validate_policy(DEFAULT_POLICY) == []


def test_the_previous_default_is_still_recognised_as_mirrors_own():
    previous = MIRROR_DEFAULTS[1]["rules"][0]["selection"]
    assert previous["countType"] == "sinceImagePushed" and previous["countNumber"] == 14


def test_a_pulled_based_rule_needs_days():
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "sinceImagePulled",
                    "countNumber": 9,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    assert validate_policy(policy) == [
        "rules[0].selection.countUnit: must be days with sinceImagePulled"
    ]
