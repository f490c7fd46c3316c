"""Deliveries: one row per webhook a merchant's account sent, unique on ``(merchant_id,
event_id)``. Writing the row is the idempotency of the event: the worker applies an event
only in the transaction that inserted its delivery."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from store.database import Database, DialectStatement
from store.schema import deliveries

_INSERT = DialectStatement(
    lambda insert: (
        insert(deliveries)
        .on_conflict_do_nothing(index_elements=["merchant_id", "event_id"])
        .returning(deliveries.c.id)
    )
)


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
