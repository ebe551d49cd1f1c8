"""ECR lifecycle policies: the default one, and ECR's documented rules for a user's file.

When a mutable tag moves upstream, mirror re-points the tag and the old image is left
untagged, so without a rule repositories grow for ever. ECR counts by last pull only to
archive (`sinceImagePulled` goes with `transition` to the `archive` storage class), so the
default has two rules:

1. an untagged image not pulled for 30 days moves to the archive storage class;
2. an untagged image archived for 90 days (ECR's minimum stay in archive) is expired.

An archived image answers 404 to a pull, so mirror restores every archived digest that
something still pins (`mirror.restore`). The children of a tagged index are untagged in
ECR, but ECR's evaluation rules never archive an image that an active index refers to,
and mirror restores them too. Tagged images are never touched.

Rules (Amazon ECR user guide, "Lifecycle policy properties", "Examples of lifecycle
policies", "Archiving an image"):
https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "ARCHIVE_DAYS",
    "DEFAULT_POLICY",
    "MIRROR_DEFAULTS",
    "UNPULLED_DAYS",
    "can_archive",
    "load_policy",
    "validate_policy",
]

UNPULLED_DAYS = 30
# "You cannot configure lifecycle policies that delete images that have been in archive
# for less than 90 days" (user guide, "Archiving an image"); the storage is charged for 90
# days whenever the image goes, so expiring sooner would save nothing.
ARCHIVE_DAYS = 90
DEFAULT_POLICY: dict[str, Any] = {
    "rules": [
        {
            "rulePriority": 1,
            "description": f"mirror: archive untagged images not pulled for {UNPULLED_DAYS} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": UNPULLED_DAYS,
            },
            "action": {"type": "transition", "targetStorageClass": "archive"},
        },
        {
            "rulePriority": 2,
            "description": f"mirror: expire untagged images archived for {ARCHIVE_DAYS} days",
            "selection": {
                "tagStatus": "untagged",
                "storageClass": "archive",
                "countType": "sinceImageTransitioned",
                "countUnit": "days",
                "countNumber": ARCHIVE_DAYS,
            },
            "action": {"type": "expire"},
        },
    ]
}
# What mirror has put on repositories as its default, now and before: replaced by the
# current default, or removed where prune takes over. The second one ECR refuses
# (sinceImagePulled with expire); only a test ECR ever held it.
MIRROR_DEFAULTS: tuple[dict[str, Any], ...] = (
    DEFAULT_POLICY,
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "mirror: expire untagged images not pulled for 30 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePulled",
                    "countUnit": "days",
                    "countNumber": UNPULLED_DAYS,
                },
                "action": {"type": "expire"},
            }
        ]
    },
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
MAX_RULES = 50  # "Rules per lifecycle policy" (ECR service quotas)
MAX_WILDCARDS = 4  # per tagPatternList string ("Tag pattern list")

_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
}
_ACTION_KEYS = {"type", "targetStorageClass"}
# Count type -> the actions ECR allows with it and the storage class it selects.
_COUNT_TYPES: dict[str, tuple[frozenset[str], str]] = {
    "imageCountMoreThan": (frozenset({"expire", "transition"}), "standard"),
    "sinceImagePushed": (frozenset({"expire", "transition"}), "standard"),
    "sinceImagePulled": (frozenset({"transition"}), "standard"),
    "sinceImageTransitioned": (frozenset({"expire"}), "archive"),
}
_DAY_COUNTS = {"sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned"}


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _unknown(where: str, found: dict[str, Any], allowed: set[str]) -> list[str]:
    return [f"{where}.{k}: not a lifecycle policy property" for k in found if k not in allowed]


def _tag_errors(where: str, selection: dict[str, Any]) -> list[str]:
    status = selection.get("tagStatus")
    patterns, prefixes = selection.get("tagPatternList"), selection.get("tagPrefixList")
    errors = []
    if status not in ("tagged", "untagged", "any"):
        errors.append(f"{where}.tagStatus: tagged, untagged or any")
    for key, value in (("tagPatternList", patterns), ("tagPrefixList", prefixes)):
        if value is not None and (
            not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value)
        ):
            errors.append(f"{where}.{key}: a non-empty list of strings")
    if status == "tagged" and not (patterns or prefixes):
        errors.append(f"{where}: tagStatus tagged needs tagPrefixList or tagPatternList")
    if status in ("untagged", "any") and (patterns is not None or prefixes is not None):
        errors.append(f"{where}: tagStatus {status} takes no tagPrefixList or tagPatternList")
    if patterns is not None and prefixes is not None:
        errors.append(f"{where}: tagPatternList and tagPrefixList cannot be used together")
    if isinstance(patterns, list):
        errors += [
            f"{where}.tagPatternList: {pattern!r} has more than {MAX_WILDCARDS} wildcards (*)"
            for pattern in patterns
            if isinstance(pattern, str) and pattern.count("*") > MAX_WILDCARDS
        ]
    return errors


def _count_errors(where: str, selection: dict[str, Any]) -> list[str]:
    count_type = selection.get("countType")
    if count_type not in _COUNT_TYPES:
        return [f"{where}.countType: one of {', '.join(_COUNT_TYPES)}"]
    errors = []
    if count_type in _DAY_COUNTS:
        if selection.get("countUnit") != "days":
            errors.append(f"{where}.countUnit: must be days with {count_type}")
    elif "countUnit" in selection:
        errors.append(f"{where}.countUnit: not allowed with {count_type}")
    number = selection.get("countNumber")
    if not _whole(number):
        errors.append(f"{where}.countNumber: a whole number from 1")
    elif count_type == "sinceImageTransitioned" and number < ARCHIVE_DAYS:
        errors.append(
            f"{where}.countNumber: at least {ARCHIVE_DAYS} with sinceImageTransitioned "
            "(archived images stay in archive for 90 days at least)"
        )
    storage = selection.get("storageClass")
    wanted = _COUNT_TYPES[count_type][1]
    if wanted == "archive" and storage != "archive":
        errors.append(f"{where}.storageClass: must be archive with sinceImageTransitioned")
    elif wanted == "standard" and storage not in (None, "standard"):
        errors.append(f"{where}.storageClass: only standard with {count_type}")
    return errors


def _action_errors(where: str, action: Any, count_type: Any) -> list[str]:
    if not isinstance(action, dict):
        return [f"{where}: required, an object with a type"]
    errors = _unknown(where, action, _ACTION_KEYS)
    kind = action.get("type")
    if kind not in ("expire", "transition"):
        return [*errors, f"{where}.type: expire or transition"]
    if kind == "transition" and action.get("targetStorageClass") != "archive":
        errors.append(f'{where}.targetStorageClass: must be "archive" with transition')
    if kind == "expire" and "targetStorageClass" in action:
        errors.append(f"{where}.targetStorageClass: only with transition")
    allowed = _COUNT_TYPES.get(count_type, (frozenset({kind}), ""))[0]
    if kind not in allowed:
        errors.append(f"{where}.type: {count_type} allows only {' or '.join(sorted(allowed))}")
    return errors


def _rule_errors(index: int, rule: Any) -> list[str]:
    where = f"rules[{index}]"
    if not isinstance(rule, dict):
        return [f"{where}: a rule is an object"]
    errors = _unknown(where, rule, _RULE_KEYS)
    if not _whole(rule.get("rulePriority")):
        errors.append(f"{where}.rulePriority: a whole number from 1")
    if "description" in rule and not isinstance(rule["description"], str):
        errors.append(f"{where}.description: a string")
    selection = rule.get("selection")
    if not isinstance(selection, dict):
        return [*errors, f"{where}.selection: required"]
    inner = f"{where}.selection"
    errors += _unknown(inner, selection, _SELECTION_KEYS)
    errors += _tag_errors(inner, selection)
    errors += _count_errors(inner, selection)
    errors += _action_errors(f"{where}.action", rule.get("action"), selection.get("countType"))
    return errors


def validate_policy(policy: Any) -> list[str]:
    """Every way `policy` breaks ECR's documented rules; an empty list means valid."""
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list):
        return ['a lifecycle policy is an object with a "rules" list']
    rules = policy["rules"]
    errors = [f"{key}: not a lifecycle policy property" for key in policy if key != "rules"]
    if not 1 <= len(rules) <= MAX_RULES:
        errors.append(f"a lifecycle policy has 1 to {MAX_RULES} rules")
    errors += [error for i, rule in enumerate(rules) for error in _rule_errors(i, rule)]
    priorities = [r.get("rulePriority") for r in rules if isinstance(r, dict)]
    numbers: list[int] = [p for p in priorities if _whole(p)]
    if len(set(numbers)) != len(numbers):
        errors.append("rulePriority values must be unique")
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("selection"), dict):
            continue
        last = numbers and rule.get("rulePriority") == max(numbers)
        if rule["selection"].get("tagStatus") == "any" and not last:
            errors.append("a tagStatus any rule must have the highest rulePriority")
    return errors


def can_archive(policy: dict[str, Any] | None) -> bool:
    """Whether `policy` moves images to the archive storage class, where a pull fails."""
    rules = policy.get("rules", []) if policy else []
    return any(rule.get("action", {}).get("type") == "transition" for rule in rules)


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
