"""The coordination table: created as mirror needs it, refused when it is another's."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.stub import Stubber

from mirror.coordination.table import KEY_SCHEMA, TTL_ATTRIBUTE, Table, open_table
from mirror.errors import CoordinationError
from tests.support.fake_ecr import REGION


def test_a_missing_table_is_created_on_demand_with_mirrors_keys_and_ttl(aws):
    open_table("mirror-state", REGION)
    client = boto3.client("dynamodb", region_name=REGION)
    described = client.describe_table(TableName="mirror-state")["Table"]
    assert described["KeySchema"] == KEY_SCHEMA
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert described["SSEDescription"]["Status"] == "ENABLED"
    ttl = client.describe_time_to_live(TableName="mirror-state")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}


def test_an_existing_table_of_mirrors_is_used_as_it_is(aws):
    first = open_table("mirror-state", REGION)
    first.put({"pk": "task", "sk": "someone", "kind": "daemon"})
    again = open_table("mirror-state", REGION)
    assert again.get("task", "someone") == {"pk": "task", "sk": "someone", "kind": "daemon"}


@pytest.mark.parametrize(
    ("keys", "attributes", "named"),
    [
        ([("id", "HASH")], [("id", "S")], "id (S, HASH)"),
        ([("pk", "HASH")], [("pk", "S")], "pk (S, HASH)"),
        ([("pk", "HASH"), ("sk", "RANGE")], [("pk", "S"), ("sk", "N")], "sk (N, RANGE)"),
    ],
)
def test_a_table_with_another_key_schema_is_refused_and_left_alone(aws, keys, attributes, named):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="theirs",
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, k in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in attributes],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(CoordinationError) as refused:
        open_table("theirs", REGION)
    assert "theirs is not mirror's" in refused.value.message
    assert named in refused.value.message
    assert "coordination.dynamodb_table" in refused.value.hint
    assert client.scan(TableName="theirs")["Items"] == []  # nothing written into it


def test_a_refused_call_names_the_table_the_code_and_the_permissions():
    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    table = Table(client, "mirror-state")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_item", "AccessDeniedException", "not authorized to perform dynamodb:GetItem"
        )
        with pytest.raises(CoordinationError) as refused:
            table.get("lease", "leader")
    assert "GetItem on table mirror-state: AccessDeniedException" in refused.value.message
    assert "dynamodb:GetItem" in refused.value.hint


def test_values_and_names_no_expression_uses_are_left_out(table):
    # DynamoDB refuses an ExpressionAttributeValues entry no expression uses (moto too)
    assert table.update(
        "quota", "x", "SET #remaining = :r", {":r": 3, ":reserve": 1}, "remaining", "pending"
    ) == {"pk": "quota", "sk": "x", "remaining": 3.0}


def test_conditional_writes_racing_on_one_item_are_atomic(table, another):
    """The fake holds DynamoDB's rule (tests/support/moto_dynamodb.py): of 40 conditional
    increments racing for 25 slots, exactly 25 succeed."""
    table.put({"pk": "pace", "sk": "race", "used": 0})
    granted = []

    def race(handle: Table) -> None:
        for _ in range(5):
            done = handle.update(
                "pace", "race", "ADD #used :one", {":one": 1, ":room": 24}, "used",
                condition="#used <= :room",
            )  # fmt: skip
            granted.append(done is not None)

    threads = [threading.Thread(target=race, args=(h,)) for h in (table, another) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 25
    assert table.get("pace", "race")["used"] == 25


def test_processes_starting_together_share_one_table_and_each_record_stays(aws):
    """Every process makes sure of the table at start and writes its record: none may
    lose the others' (mirror status lists each). DynamoDB refuses a second CreateTable
    of one name; moto let racing ones all succeed, each replacing the table and what was
    written to it, until tests/support/moto_dynamodb.py held it to DynamoDB's rule
    (without the rule, this test failed 3 runs in 9)."""
    names = [f"daemon@{i}" for i in range(4)]
    for table in ("state-a", "state-b", "state-c"):

        def start(name: str, table: str = table) -> None:
            open_table(table, REGION).put({"pk": "task", "sk": name, "kind": "daemon"})

        threads = [threading.Thread(target=start, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [t["sk"] for t in open_table(table, REGION).query("task")] == names, table
