"""ECR lifecycle policies: the default one, and checks for a user's file before upload.

When a mutable tag moves upstream, mirror re-points the tag and the old image is left
untagged, so without a rule repositories grow for ever. The default expires an untagged
image once it has not been pulled for 30 days (`sinceImagePulled`, ECR's last recorded
pull time, refreshed at least daily). Not by push age: the digest a tag leaves behind was
usually pushed long ago, and every lock file and merged include that pinned it would
break at the next evaluation, while builds still pull it. Tagged images are never
expired by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_POLICY", "MIRROR_DEFAULTS", "load_policy", "validate_policy"]

UNPULLED_DAYS = 30
DEFAULT_POLICY: dict[str, Any] = {
    "rules": [
        {
            "rulePriority": 1,
            "description": f"mirror: expire untagged images not pulled for {UNPULLED_DAYS} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": UNPULLED_DAYS,
            },
            "action": {"type": "expire"},
        }
    ]
}
# What mirror has put on repositories as its default, now and before (14 days after
# push): replaced by the current default, or removed where prune takes over.
MIRROR_DEFAULTS: tuple[dict[str, Any], ...] = (
    DEFAULT_POLICY,
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "mirror: expire untagged images 14 days after push",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 14,
                },
                "action": {"type": "expire"},
            }
        ]
    },
)
MAX_RULES = 50


def _rule_errors(index: int, rule: Any) -> list[str]:
    where = f"rules[{index}]"
    if not isinstance(rule, dict):
        return [f"{where}: a rule is an object"]
    errors = []
    priority = rule.get("rulePriority")
    if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
        errors.append(f"{where}.rulePriority: a whole number from 1")
    selection = rule.get("selection")
    if not isinstance(selection, dict):
        return [*errors, f"{where}.selection: required"]
    status = selection.get("tagStatus")
    if status not in ("tagged", "untagged", "any"):
        errors.append(f"{where}.selection.tagStatus: tagged, untagged or any")
    if status == "tagged" and not (
        selection.get("tagPrefixList") or selection.get("tagPatternList")
    ):
        errors.append(f"{where}.selection: tagStatus tagged needs tagPrefixList or tagPatternList")
    count_type = selection.get("countType")
    number = selection.get("countNumber")
    if count_type == "imageCountMoreThan":
        if "countUnit" in selection:
            errors.append(f"{where}.selection.countUnit: not allowed with imageCountMoreThan")
    elif count_type in ("sinceImagePushed", "sinceImagePulled"):
        if selection.get("countUnit") != "days":
            errors.append(f"{where}.selection.countUnit: must be days with {count_type}")
    else:
        errors.append(
            f"{where}.selection.countType: imageCountMoreThan, sinceImagePushed or sinceImagePulled"
        )
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        errors.append(f"{where}.selection.countNumber: a whole number from 1")
    action = rule.get("action")
    if not isinstance(action, dict) or action.get("type") != "expire":
        errors.append(f'{where}.action: must be {{"type": "expire"}}')
    return errors


def validate_policy(policy: Any) -> list[str]:
    """ECR's documented rules for a lifecycle policy; an empty list means valid."""
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list):
        return ['a lifecycle policy is an object with a "rules" list']
    rules = policy["rules"]
    if not 1 <= len(rules) <= MAX_RULES:
        return [f"a lifecycle policy has 1 to {MAX_RULES} rules"]
    errors = [error for i, rule in enumerate(rules) for error in _rule_errors(i, rule)]
    if errors:
        return errors
    priorities = [r["rulePriority"] for r in rules]
    if len(set(priorities)) != len(priorities):
        errors.append("rulePriority values must be unique")
    for rule in rules:
        if rule["selection"]["tagStatus"] == "any" and rule["rulePriority"] != max(priorities):
            errors.append("a tagStatus any rule must have the highest rulePriority")
    return errors


def load_policy(setting: str, base: Path) -> dict[str, Any] | None:
    """The policy a `lifecycle_policy` setting means: DEFAULT_POLICY, None, or a file's JSON
    (relative to the config file). Raises ValueError with every problem found."""
    if setting == "default":
        return DEFAULT_POLICY
    if setting == "none":
        return None
    path = (base / setting).resolve()
    try:
        policy = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    errors = validate_policy(policy)
    if errors:
        raise ValueError(f"{path}: " + "; ".join(errors))
    result: dict[str, Any] = policy
    return result
