"""PostgreSQL's one-statement shipment save (``store.shipments._SAVE_PG``) is hand-written SQL:
its column lists must follow ``store/schema.py``, or a column added there would be written on
SQLite and silently left out on PostgreSQL."""

from __future__ import annotations

import re

import sqlalchemy as sa

from store.schema import shipment_changes, shipment_scans, shipments
from store.shipments import _SAVE_PG

#: Columns of ``shipments`` that a save never writes: set once at creation, or by another job.
NOT_SAVED = {"id", "merchant_id", "created_at", "shippo_polled_at"}


def _columns(table: sa.Table, *, without: set[str]) -> set[str]:
    return {c.name for c in table.columns} - without


def _inserted_into(table: str) -> set[str]:
    found = re.search(rf"INSERT INTO {table} \(([^)]*)\)", _SAVE_PG.text)
    assert found, f"no INSERT INTO {table} in the statement"
    return {name.strip() for name in found.group(1).split(",")}


def test_the_update_sets_every_column_a_save_owns() -> None:
    found = re.search(r"UPDATE shipments SET (.*?)\n\s*WHERE", _SAVE_PG.text, re.S)
    assert found
    assigned = set(re.findall(r"(\w+) = ", found.group(1)))
    assert assigned == _columns(shipments, without=NOT_SAVED)


def test_scans_and_changes_are_inserted_with_every_column() -> None:
    assert _inserted_into("shipment_scans") == _columns(shipment_scans, without={"id"})
    assert _inserted_into("shipment_changes") == _columns(shipment_changes, without={"id"})
