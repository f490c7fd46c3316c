"""Read-only aggregates for the ops dashboard (``admin/dashboard.py``): open shipment
exceptions per merchant, notification outcomes since a moment, who owns which outbox message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import merchants, notifications, outbox_messages, shipments


@dataclass(frozen=True)
class OpenExceptions:
    """Shipments of one merchant with one open exception class."""

    merchant: str
    cls: str
    count: int
    oldest_scan: datetime | None


@dataclass(frozen=True)
class OutcomeCount:
    channel: str
    status: str
    count: int


def open_exceptions(conn: Connection) -> list[OpenExceptions]:
    """Per merchant (by slug) and exception class, the most frequent class of a merchant first."""
    n = sa.func.count().label("n")
    rows = conn.execute(
        sa.select(
            merchants.c.slug,
            shipments.c.exception,
            n,
            sa.func.min(shipments.c.last_scan_at).label("oldest_scan"),
        )
        .select_from(shipments.join(merchants, merchants.c.id == shipments.c.merchant_id))
        .where(shipments.c.exception.is_not(None))
        .group_by(merchants.c.slug, shipments.c.exception)
        .order_by(merchants.c.slug, sa.desc(n))
    )
    return [OpenExceptions(r.slug, r.exception, int(r.n), r.oldest_scan) for r in rows]


def notification_outcomes(conn: Connection, *, since: datetime) -> list[OutcomeCount]:
    """Notifications created at or after ``since``, counted by channel and status."""
    rows = conn.execute(
        sa.select(notifications.c.channel, notifications.c.status, sa.func.count().label("n"))
        .where(notifications.c.created_at >= since)
        .group_by(notifications.c.channel, notifications.c.status)
    )
    return [OutcomeCount(r.channel, r.status, int(r.n)) for r in rows]


def merchant_slugs(conn: Connection) -> dict[int, str]:
    """Every merchant's slug by id."""
    return {int(r.id): r.slug for r in conn.execute(sa.select(merchants.c.id, merchants.c.slug))}


def outbox_owners(conn: Connection, message_ids: Sequence[int]) -> dict[int, int]:
    """The merchant id of each of these outbox messages."""
    if not message_ids:
        return {}
    rows = conn.execute(
        sa.select(outbox_messages.c.id, outbox_messages.c.merchant_id).where(
            outbox_messages.c.id.in_(message_ids)
        )
    )
    return {int(r.id): int(r.merchant_id) for r in rows}
