"""Lifecycle policies ECR refuses, each with the documentation that says so, and policies
it accepts. Both mirror's validator and the test ECR are held to this one table."""

from __future__ import annotations

from typing import Any

__all__ = ["ACCEPTED", "REFUSED", "rule"]

PROPERTIES = "ECR user guide, Lifecycle policy properties"
EXAMPLES = "ECR user guide, Examples of lifecycle policies"
ARCHIVING = "ECR user guide, Archiving an image"


def rule(priority: int = 1, action: dict[str, Any] | None = None, **selection: Any) -> dict:
    chosen = {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}
    chosen.update(selection)
    return {
        "rulePriority": priority,
        "selection": {k: v for k, v in chosen.items() if v is not None},
        "action": action or {"type": "expire"},
    }


ARCHIVE = {"type": "transition", "targetStorageClass": "archive"}
PULLED = {"countType": "sinceImagePulled", "countUnit": "days", "countNumber": 30}
ARCHIVED = {
    "countType": "sinceImageTransitioned",
    "countUnit": "days",
    "countNumber": 90,
    "storageClass": "archive",
}

# (why ECR refuses it, where that is documented, the policy)
REFUSED: list[tuple[str, str, dict[str, Any]]] = [
    (
        "sinceImagePulled only archives",
        f"{EXAMPLES}: Filtering on last pulled time",
        {"rules": [rule(**PULLED)]},
    ),
    (
        "sinceImageTransitioned only expires",
        f"{PROPERTIES}: Storage class; {ARCHIVING}",
        {"rules": [rule(action=ARCHIVE, **ARCHIVED)]},
    ),
    (
        "sinceImageTransitioned needs storageClass archive",
        f"{PROPERTIES}: Storage class",
        {"rules": [rule(**{**ARCHIVED, "storageClass": None})]},
    ),
    (
        "storageClass archive only with sinceImageTransitioned",
        f"{PROPERTIES}: Storage class",
        {"rules": [rule(storageClass="archive")]},
    ),
    (
        "an archived image stays 90 days",
        ARCHIVING,
        {"rules": [rule(**{**ARCHIVED, "countNumber": 30})]},
    ),
    (
        "a transition names its target storage class",
        f"{PROPERTIES}: Action (targetStorageClass)",
        {"rules": [rule(action={"type": "transition"})]},
    ),
    (
        "archive is the only target storage class",
        f"{PROPERTIES}: Action (targetStorageClass)",
        {"rules": [rule(action={"type": "transition", "targetStorageClass": "glacier"})]},
    ),
    (
        "expire and transition are the only actions",
        f"{PROPERTIES}: Action (type)",
        {"rules": [rule(action={"type": "delete"})]},
    ),
    (
        "a day count needs countUnit days",
        f"{PROPERTIES}: Count unit",
        {"rules": [rule(countType="sinceImagePushed", countNumber=7)]},
    ),
    (
        "imageCountMoreThan takes no countUnit",
        f"{PROPERTIES}: Count unit",
        {"rules": [rule(countUnit="days")]},
    ),
    (
        "countNumber is a positive integer",
        f"{PROPERTIES}: Count number",
        {"rules": [rule(countNumber=0)]},
    ),
    (
        "tagged needs a tag list",
        f"{PROPERTIES}: Tag status",
        {"rules": [rule(tagStatus="tagged")]},
    ),
    (
        "untagged omits the tag lists",
        f"{PROPERTIES}: Tag status",
        {"rules": [rule(tagPrefixList=["v"])]},
    ),
    (
        "at most four wildcards a pattern",
        f"{PROPERTIES}: Tag pattern list",
        {"rules": [rule(tagStatus="tagged", tagPatternList=["test*1*2*3*4*5*6"])]},
    ),
    (
        "rule priorities are unique",
        f"{PROPERTIES}: Rule priority",
        {"rules": [rule(1), rule(1, tagStatus="tagged", tagPrefixList=["v"])]},
    ),
    (
        "an any rule comes last",
        f"{PROPERTIES}: Rule priority",
        {"rules": [rule(1, tagStatus="any"), rule(2)]},
    ),
    (
        "no unknown count type",
        f"{PROPERTIES}: Count type",
        {"rules": [rule(countType="sinceImageBuilt", countUnit="days")]},
    ),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("archive by last pull, then expire from archive", {"rules": [
        rule(1, ARCHIVE, **PULLED), rule(2, **ARCHIVED)]}),
    ("archive by push age", {"rules": [
        rule(action=ARCHIVE, countType="sinceImagePushed", countUnit="days", countNumber=14)]}),
    ("keep the newest tagged, four wildcards", {"rules": [
        rule(1, tagStatus="tagged", tagPatternList=["*test*1*2*3"], countNumber=5),
        rule(2, tagStatus="any", countType="sinceImagePushed", countUnit="days", countNumber=9)]}),
    ("standard written out", {"rules": [rule(storageClass="standard")]}),
]  # fmt: skip
