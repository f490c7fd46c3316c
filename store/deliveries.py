"""Deliveries: one row per webhook a merchant's account sent, unique on ``(merchant_id,
event_id)``. Writing the row is the idempotency of the event: the worker applies an event
only in the transaction that inserted its delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import Database, DialectStatement
from store.merchant_cache import for_db, version_of
from store.merchants import Merchant
from store.schema import deliveries

_INSERT = DialectStatement(
    lambda insert: (
        insert(deliveries)
        .on_conflict_do_nothing(index_elements=["merchant_id", "event_id"])
        .returning(deliveries.c.id)
    )
)

_INSERT_CONFIRMING = DialectStatement(
    lambda insert: (
        insert(deliveries)
        .on_conflict_do_nothing(index_elements=["merchant_id", "event_id"])
        .returning(deliveries.c.id, version_of(sa.bindparam("of_merchant")).label("merchant_updated_at"))
    )
)


def record_for(db: Database, conn: Connection, merchant_slug: str, **delivery: Any) -> tuple[Merchant, bool]:
    """The merchant (``NotFound`` when unknown) and :func:`record`'s answer for ``delivery``
    (:func:`record`'s keywords but ``merchant_id``), usually in ONE
    statement: the merchant is the process's copy (``store/merchant_cache.py``), confirmed by the stored
    ``updated_at`` the insert returns, and read again only when it changed. A repeat inserts
    nothing and returns the copy unconfirmed (a repeat is not applied)."""
    cache = for_db(db)
    cached = cache.candidate(merchant_slug)
    merchant = cached if cached is not None else cache.require(conn, merchant_slug)
    inserted = conn.execute(
        _INSERT_CONFIRMING(db), {**delivery, "merchant_id": merchant.id, "of_merchant": merchant.id}
    ).first()
    if inserted is None:
        return merchant, False
    if cached is not None:
        merchant = cache.confirm(conn, cached, inserted.merchant_updated_at)
    return merchant, True


def record(
    db: Database,
    conn: Connection,
    *,
    merchant_id: int,
    event_id: str,
    event: str,
    received_at: datetime,
    processed_at: datetime,
    outcome: str,
    body: str,
) -> bool:
    """Insert the delivery; ``False`` when this merchant's ``event_id`` is already stored (a repeat)."""
    inserted = conn.execute(
        _INSERT(db),
        {
            "merchant_id": merchant_id,
            "event_id": event_id,
            "event": event,
            "received_at": received_at,
            "processed_at": processed_at,
            "outcome": outcome,
            "body": body,
        },
    ).first()
    return inserted is not None
