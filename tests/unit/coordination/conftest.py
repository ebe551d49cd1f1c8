"""A coordination table on moto's DynamoDB (server mode), fresh for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror.coordination.table import Table, open_table
from tests.support.fake_ecr import REGION


class Clock:
    """Epoch seconds that tests move by hand: leases and claims expire on it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(aws: str) -> Iterator[Table]:
    yield open_table("mirror-state", REGION)


@pytest.fixture
def another(table: Table) -> Table:
    """The same table as a second process opens it: its own client and connections."""
    return open_table(table.name, REGION)


@pytest.fixture
def clock() -> Clock:
    return Clock()
