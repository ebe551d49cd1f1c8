"""Who may pull the mirror: the repository policy statements `pull_access` renders.

Member accounts of an AWS Organization (or named accounts) get the three read actions
a `docker pull` needs on every mirrored repository. mirror owns only its own statements,
by Sid: any other statement of an existing repository policy is kept as it is.
"""

from __future__ import annotations

import json
from typing import Any

from mirror.config.model import PullAccess

__all__ = ["PULL_ACTIONS", "SIDS", "merge_policy", "pull_statements"]

PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
ORGANIZATION_SID, ACCOUNTS_SID = "MirrorPullAccess", "MirrorPullAccessAccounts"
SIDS = (ORGANIZATION_SID, ACCOUNTS_SID)


def pull_statements(access: PullAccess, partition: str = "aws") -> list[dict[str, Any]]:
    """One statement for the Organization (any principal with its aws:PrincipalOrgID) and
    one naming the accounts (ARNs in the repositories' `partition`): IAM ANDs the
    conditions of one statement, and either suffices."""
    statements: list[dict[str, Any]] = []
    if access.organization_id:
        statements.append(
            {
                "Sid": ORGANIZATION_SID,
                "Effect": "Allow",
                "Principal": "*",
                "Action": list(PULL_ACTIONS),
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": access.organization_id}},
            }
        )
    if access.accounts:
        statements.append(
            {
                "Sid": ACCOUNTS_SID,
                "Effect": "Allow",
                "Principal": {
                    "AWS": [f"arn:{partition}:iam::{a}:root" for a in sorted(access.accounts)]
                },
                "Action": list(PULL_ACTIONS),
            }
        )
    return statements


def merge_policy(
    existing: str | None, access: PullAccess, partition: str = "aws"
) -> dict[str, Any]:
    """The repository policy with mirror's statements as configured and every other
    statement of `existing` (its JSON text, or None) kept."""
    document: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
    if existing:
        try:
            parsed = json.loads(existing)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("Statement"), list):
            document = parsed
    others = [
        s for s in document["Statement"] if not (isinstance(s, dict) and s.get("Sid") in SIDS)
    ]
    return {**document, "Statement": [*others, *pull_statements(access, partition)]}
