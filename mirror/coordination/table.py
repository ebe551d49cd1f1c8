"""The coordination table: one DynamoDB table that every mirror process of a config shares.

mirror's own key schema: a string partition key `pk` and a string sort key `sk`, on-demand
capacity. Items are grouped by kind under a fixed partition key, so `mirror status` reads
each kind with one Query: "quota" (one upstream quota), "lease" (a lease on work),
"pace" (one second of one registry's requests), "task" (a mirror process).
`expires_at` (epoch seconds) is the table's TTL attribute: DynamoDB deletes expired pace
windows, leases and task records on its own, within days; mirror never relies on that and
reads `expires_at` itself.

Every call goes through `Table`, which names each attribute through a placeholder (many
plain words, such as `limit`, `window` and `owner`, are reserved in expressions) and
turns DynamoDB's refusals into CoordinationError with what to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from mirror.errors import CoordinationError

__all__ = ["KEY_SCHEMA", "TTL_ATTRIBUTE", "Step", "Table", "open_table"]

log = structlog.get_logger(__name__)

KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
KEY_ATTRIBUTES = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]
TTL_ATTRIBUTE = "expires_at"
CREATE_WAIT_SECONDS = 60.0
MAX_QUERY_ITEMS = 10_000  # one kind's items that `mirror status` reads, at most
CONDITION_FAILED = "ConditionalCheckFailedException"
MISSING_ATTRIBUTE_HINT = "The provided expression refers to an attribute that does not exist"


def _serializer() -> tuple[Any, Any]:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


@dataclass(frozen=True)
class Step:
    """One write of a transaction: a Put of `item`, or an Update of (pk, sk) by
    `expression`; either under `condition`."""

    pk: str = ""
    sk: str = ""
    expression: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    condition: str = ""
    item: Mapping[str, Any] | None = None


class Table:
    """Typed, conditional access to the table. Numbers come back as float; a refused
    condition is an answer (False or None), not an error."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self._to, self._from = _serializer()

    # --- values ----------------------------------------------------------------------
    def _encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._to.serialize(_number(v)) for k, v in values.items()}

    def _decode(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _plain(self._from.deserialize(v)) for k, v in item.items()}

    @staticmethod
    def _names(expression: str, names: tuple[str, ...]) -> dict[str, Any]:
        """ExpressionAttributeNames for the `#name`s the expression uses."""
        used = {f"#{n}": n for n in names if re.search(rf"#{n}\b", expression)}
        return {"ExpressionAttributeNames": used} if used else {}

    def _values(self, expression: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """ExpressionAttributeValues for the `:value`s the expression uses: DynamoDB
        refuses a value no expression uses, and an empty map."""
        used = {k: v for k, v in values.items() if re.search(rf"{k}\b", expression)}
        return {"ExpressionAttributeValues": self._encode(used)} if used else {}

    # --- calls -----------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._request(operation, TableName=self.name, **kwargs)

    def _request(self, operation: str, **kwargs: Any) -> Any:
        """One DynamoDB call; a refused condition or transaction is re-raised for the
        caller to read, any other failure is a CoordinationError that says what to do."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code, message = _code(exc), _message(exc)
            if code in (CONDITION_FAILED, "TransactionCanceledException"):
                raise
            if code == "ValidationException" and MISSING_ATTRIBUTE_HINT in message:
                raise
            raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise CoordinationError(
                f"DynamoDB {operation} on table {self.name}: {exc}",
                hint="check the network path to DynamoDB and the AWS credentials",
            ) from None

    def _refused(self, exc: Any) -> CoordinationError:
        return CoordinationError(
            f"DynamoDB {exc.operation_name} on table {self.name}: {_code(exc)}: {_message(exc)}",
            hint=_hint(_code(exc)),
        )

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        answer = self._call("get_item", Key=self._encode({"pk": pk, "sk": sk}), ConsistentRead=True)
        item = answer.get("Item")
        return self._decode(item) if item else None

    def put(
        self,
        item: Mapping[str, Any],
        condition: str | None = None,
        values: Mapping[str, Any] | None = None,
        *names: str,
    ) -> dict[str, Any] | None:
        """Write `item` if `condition` holds: None when written, else the item there (its
        owner and expiry say who holds a lease)."""
        from botocore.exceptions import ClientError

        extra: dict[str, Any] = {}
        if condition is not None:
            extra = {
                "ConditionExpression": condition,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **self._values(condition, values or {}),
                **self._names(condition, names),
            }
        try:
            self._call("put_item", Item=self._encode(item), **extra)
        except ClientError as exc:
            return self._decode(exc.response.get("Item") or {}) or {"missing": True}
        return None

    def update(
        self,
        pk: str,
        sk: str,
        expression: str,
        values: Mapping[str, Any],
        *names: str,
        condition: str | None = None,
    ) -> dict[str, Any] | None:
        """UpdateItem: the item as it is after the update, or None when `condition` did
        not hold or the expression needs an attribute the item lacks."""
        from botocore.exceptions import ClientError

        extra: dict[str, Any] = {}
        if condition is not None:
            extra["ConditionExpression"] = condition
        text = expression + " " + (condition or "")
        try:
            answer = self._call(
                "update_item",
                Key=self._encode({"pk": pk, "sk": sk}),
                UpdateExpression=expression,
                ReturnValues="ALL_NEW",
                **self._values(text, values),
                **self._names(text, names),
                **extra,
            )
        except ClientError:
            return None
        return self._decode(answer.get("Attributes") or {})

    def delete(
        self, pk: str, sk: str, condition: str, values: Mapping[str, Any], *names: str
    ) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(
                "delete_item",
                Key=self._encode({"pk": pk, "sk": sk}),
                ConditionExpression=condition,
                **self._values(condition, values),
                **self._names(condition, names),
            )
        except ClientError:
            return False
        return True

    def transact(self, *steps: Step) -> list[str] | None:
        """Several conditional writes, all or none (TransactWriteItems): None when done,
        else each step's cancellation code ("ConditionalCheckFailed" where its condition
        did not hold, "None" where it was not the cause)."""
        from botocore.exceptions import ClientError

        items = []
        for step in steps:
            text = " ".join(filter(None, (step.expression, step.condition)))
            body: dict[str, Any] = {
                "TableName": self.name,
                **self._values(text, step.values),
                **self._names(text, step.names),
            }
            if step.condition:
                body["ConditionExpression"] = step.condition
            if step.item is not None:
                items.append({"Put": {**body, "Item": self._encode(step.item)}})
            else:
                body["Key"] = self._encode({"pk": step.pk, "sk": step.sk})
                body["UpdateExpression"] = step.expression
                items.append({"Update": body})
        try:
            self._request("transact_write_items", TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            return [str(r.get("Code", "None")) for r in reasons] or ["Unknown"]
        return None

    def query(self, pk: str) -> list[dict[str, Any]]:
        """Every item of one kind, in sort-key order, up to MAX_QUERY_ITEMS."""
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < MAX_QUERY_ITEMS:
            answer = self._call(
                "query",
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=self._encode({":pk": pk}),
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            items += [self._decode(i) for i in answer.get("Items", [])]
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
        return items[:MAX_QUERY_ITEMS]

    # --- the table itself ------------------------------------------------------------
    def ensure(self) -> None:
        """The table as mirror needs it: created when missing (on-demand capacity, the
        TTL attribute on), refused with the reason when its key schema is another's."""
        from botocore.exceptions import ClientError

        try:
            described = self.client.describe_table(TableName=self.name)["Table"]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._refused(exc) from None
            self._create()
            return
        self._check_schema(described)

    def _check_schema(self, described: Mapping[str, Any]) -> None:
        keys = sorted((k["AttributeName"], k["KeyType"]) for k in described.get("KeySchema", []))
        types = {
            a["AttributeName"]: a["AttributeType"]
            for a in described.get("AttributeDefinitions", [])
        }
        wanted = sorted((k["AttributeName"], k["KeyType"]) for k in KEY_SCHEMA)
        if keys != wanted or types.get("pk") != "S" or types.get("sk") != "S":
            found = ", ".join(f"{name} ({types.get(name, '?')}, {kind})" for name, kind in keys)
            raise CoordinationError(
                f"DynamoDB table {self.name} is not mirror's: its key schema is {found or 'none'}; "
                "mirror needs pk (S, HASH) and sk (S, RANGE)",
                hint="name a table of its own in coordination.dynamodb_table (mirror creates "
                "it when it does not exist), or the one the mirror template created",
            )

    def _create(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.create_table(
                TableName=self.name,
                KeySchema=KEY_SCHEMA,
                AttributeDefinitions=KEY_ATTRIBUTES,
                BillingMode="PAY_PER_REQUEST",
                SSESpecification={"Enabled": True},  # an AWS managed key, in the account
            )
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":
                raise self._refused(exc) from None
            # another process created it a moment ago: wait for it like our own
        deadline = time.monotonic() + CREATE_WAIT_SECONDS
        while True:
            status = self._call("describe_table")["Table"].get("TableStatus")
            if status == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise CoordinationError(
                    f"DynamoDB table {self.name} is still {status} after "
                    f"{CREATE_WAIT_SECONDS:.0f}s",
                    hint="run again in a minute",
                )
            time.sleep(1.0)
        try:
            self.client.update_time_to_live(
                TableName=self.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except ClientError as exc:  # a race with another process, or no permission: cosmetic
            log.info("table_ttl_not_set", table=self.name, error=str(exc))
        log.info("coordination_table_created", table=self.name)
        self._check_schema(self._call("describe_table")["Table"])


def _number(value: Any) -> Any:
    """floats as Decimal, which is what DynamoDB's serializer takes for a number."""
    if isinstance(value, float):
        from decimal import Decimal

        return Decimal(repr(round(value, 6)))
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """A number read back as float (the deserializer's Decimal), in maps too."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return float(value) if type(value).__name__ == "Decimal" else value


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "ClientError"))


def _message(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _hint(code: str) -> str:
    if code in ("AccessDeniedException", "UnrecognizedClientException"):
        return (
            "the role needs dynamodb:GetItem, PutItem, UpdateItem, DeleteItem, Query and "
            "DescribeTable on the table (`mirror iam-policy` lists them)"
        )
    if code == "ResourceNotFoundException":
        return "the table was deleted while mirror ran: run again, and mirror creates it"
    return "DynamoDB refused the call; check the table in the console"


def open_table(name: str, region: str) -> Table:
    """The table in `region`, made sure of (created when missing)."""
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.session.Session(region_name=region).client(
        "dynamodb", config=BotoConfig(retries={"mode": "standard", "max_attempts": 5})
    )
    table = Table(client, name)
    table.ensure()
    return table
