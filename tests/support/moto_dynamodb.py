"""moto's DynamoDB with atomic item operations and table creation, as DynamoDB documents
them.

- Items: "DynamoDB provides four operations for basic create, read, update, and delete
  (CRUD) functionality. All these operations are atomic." (Amazon DynamoDB Developer
  Guide, "Working with items and attributes in DynamoDB",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html).
- Tables: CreateTable on a name that exists fails with ResourceInUseException ("You
  attempted to recreate an existing table", Amazon DynamoDB API Reference, CreateTable
  and ResourceInUseException,
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html).

moto 5.2 evaluates a condition and applies the write in separate steps with no lock,
and its server answers requests on threads: two conditional UpdateItems racing on one
item can both pass their condition, and two CreateTables racing on one name both
succeed, the second replacing the first table with everything written to it. A fake
must refuse what the real service refuses, so every item operation and CreateTable run
under one lock here (tests/unit/coordination/test_table.py races both).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

__all__ = ["teach_moto_atomic_dynamodb"]

_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
    "create_table",
)
_LOCK = threading.RLock()


def _atomic(operation: Any) -> Any:
    @functools.wraps(operation)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return operation(*args, **kwargs)

    run.atomic = True  # type: ignore[attr-defined]
    return run


def teach_moto_atomic_dynamodb() -> None:
    for name in _OPERATIONS:
        operation = getattr(DynamoDBBackend, name, None)
        if operation is not None and not getattr(operation, "atomic", False):
            setattr(DynamoDBBackend, name, _atomic(operation))
