"""Whether CloudWatch alarms and EventBridge can deliver to an SNS topic: AWS's documented
rules, which no local service enforces (moto publishes to any topic).

- SNS developer guide, "Encryption at rest" and "Enabling compatibility between event
  sources from AWS services and encrypted topics": a topic encrypted with the AWS managed
  key `alias/aws/sns` cannot receive from CloudWatch or EventBridge (that key's policy
  cannot be changed); a customer managed key's policy must let the service principal use
  it with `kms:Decrypt` and `kms:GenerateDataKey*`. EventBridge's KMS requests carry no
  `aws:SourceAccount` or `aws:SourceArn`, so a grant conditioned on them denies it.
- The topic policy must let the service principal `sns:Publish`.

Policies are read as CloudFormation writes them: intrinsic functions are left as they
are, since the rules look only at principals, actions and condition keys.
"""

from __future__ import annotations

import fnmatch
from typing import Any

__all__ = ["PUBLISHERS", "delivery_problems"]

PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")
KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")  # GenerateDataKey* covers the second
SOURCE_KEYS = {"aws:sourceaccount", "aws:sourcearn"}
AWS_MANAGED_SNS_KEY = "alias/aws/sns"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants(policy: dict[str, Any], service: str, action: str) -> list[dict[str, Any]]:
    """The Allow statements of `policy` that give `service` the `action`."""
    found = []
    for statement in _list(policy.get("Statement", [])):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = _list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if service not in services:
            continue
        if any(fnmatch.fnmatchcase(action, a) for a in _list(statement.get("Action", []))):
            found.append(statement)
    return found


def _condition_keys(statement: dict[str, Any]) -> set[str]:
    conditions = statement.get("Condition", {})
    return {key.lower() for block in conditions.values() for key in block}


def delivery_problems(
    topic_key: Any, key_policy: dict[str, Any] | None, topic_policy: dict[str, Any]
) -> list[str]:
    """Why an alarm or an event would not reach the topic; empty when both would.
    `topic_key` is the topic's KmsMasterKeyId (None: not encrypted), `key_policy` that
    key's policy (None for a key whose policy cannot be read or changed)."""
    problems = []
    if isinstance(topic_key, str) and topic_key.endswith(AWS_MANAGED_SNS_KEY):
        problems.append(f"the topic is encrypted with {AWS_MANAGED_SNS_KEY}")
    elif topic_key is not None and key_policy is None:
        problems.append("the topic's key has no policy to check")
    for service in PUBLISHERS:
        if topic_key is not None and key_policy is not None:
            for action in KMS_ACTIONS:
                grants = _grants(key_policy, service, action)
                if not grants:
                    problems.append(f"the key policy does not give {service} {action}")
                elif service == "events.amazonaws.com" and all(
                    _condition_keys(g) & SOURCE_KEYS for g in grants
                ):
                    problems.append(
                        f"the key grants {service} {action} only on aws:SourceAccount or "
                        "aws:SourceArn, which EventBridge's KMS requests do not carry"
                    )
        if not _grants(topic_policy, service, "sns:Publish"):
            problems.append(f"the topic policy does not let {service} publish")
    return problems
