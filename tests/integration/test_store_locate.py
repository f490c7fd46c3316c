"""``shipments.locate`` asks its join attempts in ONE statement (``store/shipments.py``): the
shipment it returns is one the attempts, tried one after the other, find first — a track by
``transaction``, then ``(carrier, tracking number)``, then a number whose carrier is not known
yet; a label by its transaction, then ``(carrier, number)``, then a number with no transaction
yet — and a new one only when no attempt finds any."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.payload import LabelUpdate, TrackUpdate, parse_event, parse_webhook
from store import merchants as merchant_store
from store import shipments as shipment_store
from store.database import Database
from store.schema import shipments
from tests.fixtures.shippo import raw
from tests.integration.conftest import VAULT
from tests.support.rows import planted_shipments

TRANSACTIONS = st.sampled_from([None, "t1", "t2"])
CARRIERS = st.sampled_from([None, "usps", "ups"])
NUMBERS = st.sampled_from(["n1", "n2"])


def _allowed(rows: list[tuple[str | None, str | None, str]]) -> list[tuple[str | None, str | None, str]]:
    """What the unique constraints let stand: one row per transaction, one per (carrier, number)."""
    kept: list[tuple[str | None, str | None, str]] = []
    seen: set[tuple[str | None, ...]] = set()
    for t, c, n in rows:
        keys: set[tuple[str | None, ...]] = {("t", t)} if t else set()
        if c:
            keys.add(("cn", c, n))
        if not keys & seen:
            kept.append((t, c, n))
            seen |= keys
    return kept


STORED = st.lists(st.tuples(TRANSACTIONS, CARRIERS, NUMBERS), max_size=6).map(_allowed)


class _RolledBack(Exception):
    pass


def _event(kind: str, transaction: str | None, carrier: str | None, number: str | None) -> Any:
    parsed = parse_event(
        parse_webhook(raw("track_updated_transit.json" if kind == "track" else "transaction_created.json"))
    )
    if kind == "track":
        assert isinstance(parsed, TrackUpdate)
        return dataclasses.replace(
            parsed, transaction_id=transaction, carrier=carrier or "usps", tracking_number=number or "n1"
        )
    assert isinstance(parsed, LabelUpdate)
    return dataclasses.replace(parsed, object_id=transaction or "t1", carrier=carrier, tracking_number=number)


def _expected(event: Any, stored: dict[int, tuple[str | None, str | None, str]]) -> set[int]:
    """The rows of the first attempt that finds any (the attempts asked one at a time)."""
    attempts: list[Callable[[str | None, str | None, str], bool]]
    if isinstance(event, TrackUpdate):
        attempts = [
            *([lambda t, c, n: t == event.transaction_id] if event.transaction_id else []),
            lambda t, c, n: (c, n) == (event.carrier, event.tracking_number),
            lambda t, c, n: n == event.tracking_number and c is None,
        ]
    else:
        attempts = [lambda t, c, n: t == event.object_id]
        if event.tracking_number:
            if event.carrier:
                attempts.append(lambda t, c, n: (c, n) == (event.carrier, event.tracking_number))
            attempts.append(lambda t, c, n: n == event.tracking_number and t is None)
    for matches in attempts:
        found = {sid for sid, row in stored.items() if matches(*row)}
        if found:
            return found
    return set()


@pytest.mark.parametrize("kind", ["track", "label"])
def test_the_shipment_located_is_the_first_attempts_match(database: Database, kind: str) -> None:
    with database.write() as conn:
        merchant, _ = merchant_store.upsert(conn, "acme", vault=VAULT, name="Acme", profile={})

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(STORED, TRANSACTIONS, CARRIERS, st.one_of(st.none(), NUMBERS) if kind == "label" else NUMBERS)
    def check(
        rows: list[tuple[str | None, str | None, str]], transaction: Any, carrier: Any, number: Any
    ) -> None:
        event = _event(kind, transaction, carrier, number)
        with pytest.raises(_RolledBack), database.write() as conn:  # leaves nothing behind
            stored = planted_shipments(conn, merchant.id, rows)
            located = shipment_store.locate(database, conn, merchant.id, event)
            expected = _expected(event, stored)
            if expected:
                assert located.id in expected
            else:
                assert located.id not in stored
                assert (
                    conn.execute(sa.select(sa.func.count()).select_from(shipments)).scalar_one()
                    == len(rows) + 1
                )
            raise _RolledBack

    check()
