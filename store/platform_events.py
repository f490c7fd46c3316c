"""Platform events: a transactional outbox.

Rows are inserted in the SAME transaction as the state change they describe (so a rolled-back
change publishes nothing), and ``workers/platform_events.py`` publishes them afterwards in id
order, setting ``published_at`` once the broker has taken each one.

Publishers are serialized (``lock_publisher``): on SQLite the ``BEGIN IMMEDIATE`` of
``Database.write()`` already excludes every other writer; on PostgreSQL a transaction-scoped
advisory lock does, without blocking the webhook writers (they only insert new rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import Database
from store.schema import platform_events

#: pg_advisory_xact_lock key of "the platform events publisher" (any constant unique to us)
PUBLISHER_LOCK_KEY = 0x7063_6C68_6B70_6576  # "pclhkpev", fits a signed bigint
PUBLISHER_LOCK_TIMEOUT = "30s"


@dataclass(frozen=True)
class NewPlatformEvent:
    """One row to write: ``payload`` is the message body exactly as it will be published."""

    event_type: str
    order_id: int | None
    shipment_id: int | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class PlatformEvent:
    id: int
    merchant_id: int
    order_id: int | None
    shipment_id: int | None
    event_type: str
    payload: Mapping[str, Any]
    created_at: datetime
    published_at: datetime | None

    @property
    def event_id(self) -> str:
        return str(self.payload["event_id"])


def _row(r: Any) -> PlatformEvent:
    return PlatformEvent(
        id=r.id,
        merchant_id=r.merchant_id,
        order_id=r.order_id,
        shipment_id=r.shipment_id,
        event_type=r.event_type,
        payload=dict(r.payload),
        created_at=r.created_at,
        published_at=r.published_at,
    )


def add(conn: Connection, merchant_id: int, events: Sequence[NewPlatformEvent], *, now: datetime) -> int:
    """Insert the events (in the caller's transaction, in the given order); returns how many."""
    if not events:
        return 0
    conn.execute(
        platform_events.insert(),
        [
            {
                "merchant_id": merchant_id,
                "order_id": e.order_id,
                "shipment_id": e.shipment_id,
                "event_type": e.event_type,
                "payload": dict(e.payload),
                "created_at": now,
                "published_at": None,
            }
            for e in events
        ],
    )
    return len(events)


def has_pending(conn: Connection) -> bool:
    query = sa.select(platform_events.c.id).where(platform_events.c.published_at.is_(None)).limit(1)
    return conn.execute(query).first() is not None


def pending(conn: Connection, *, limit: int) -> list[PlatformEvent]:
    """The oldest unpublished events, in id order (served by ix_platform_events_pending)."""
    query = (
        sa.select(platform_events)
        .where(platform_events.c.published_at.is_(None))
        .order_by(platform_events.c.id)
        .limit(limit)
    )
    return [_row(r) for r in conn.execute(query)]


def mark_published(conn: Connection, event_row_id: int, at: datetime) -> None:
    conn.execute(
        platform_events.update()
        .where(platform_events.c.id == event_row_id, platform_events.c.published_at.is_(None))
        .values(published_at=at)
    )


def lock_publisher(db: Database, conn: Connection) -> None:
    """Exclude other publishers until this (write) transaction ends. Blocks, bounded, rather
    than skipping: a publisher that skipped could leave rows committed meanwhile unpublished
    until the next reconciliation."""
    if db.is_sqlite:
        return  # Database.write() began with BEGIN IMMEDIATE: we are the only writer already
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{PUBLISHER_LOCK_TIMEOUT}'"))
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PUBLISHER_LOCK_KEY)))


def for_merchant(conn: Connection, merchant_id: int) -> list[PlatformEvent]:
    """All events of one merchant, oldest first (inspection and tests)."""
    query = (
        sa.select(platform_events)
        .where(platform_events.c.merchant_id == merchant_id)
        .order_by(platform_events.c.id)
    )
    return [_row(r) for r in conn.execute(query)]
