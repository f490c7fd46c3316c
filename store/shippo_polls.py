"""Shipments as reconciliation sees them: the quiet ones to look up at Shippo, oldest first, and
when each was last looked up (``shipments.shippo_polled_at``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import merchants, shipments


@dataclass(frozen=True)
class QuietShipment:
    id: int
    merchant_id: int
    merchant_slug: str
    carrier: str
    tracking_number: str


def quiet(
    conn: Connection, *, heard_before: datetime, terminal: Sequence[str], limit: int
) -> list[QuietShipment]:
    """Non-terminal shipments with a carrier and tracking number of merchants with a Shippo token,
    that have changed before ``heard_before`` and were not looked up since; oldest first."""
    query = (
        sa.select(
            shipments.c.id,
            shipments.c.merchant_id,
            merchants.c.slug,
            shipments.c.carrier,
            shipments.c.tracking_number,
        )
        .join(merchants, merchants.c.id == shipments.c.merchant_id)
        .where(
            shipments.c.updated_at < heard_before,
            sa.or_(shipments.c.shippo_polled_at.is_(None), shipments.c.shippo_polled_at < heard_before),
            shipments.c.carrier.is_not(None),
            shipments.c.tracking_number.is_not(None),
            sa.or_(shipments.c.status.is_(None), shipments.c.status.not_in(list(terminal))),
            merchants.c.shippo_api_token_digest.is_not(None),
        )
        .order_by(shipments.c.updated_at, shipments.c.id)
        .limit(limit)
    )
    return [
        QuietShipment(r.id, r.merchant_id, r.slug, r.carrier, r.tracking_number) for r in conn.execute(query)
    ]


def mark_polled(conn: Connection, shipment_id: int, now: datetime) -> None:
    conn.execute(shipments.update().where(shipments.c.id == shipment_id).values(shippo_polled_at=now))


def find_id(conn: Connection, merchant_id: int, carrier: str, tracking_number: str) -> int | None:
    """The shipment of ``(carrier, tracking_number)`` (carrier compared in lower case, as Shippo writes it)."""
    row = conn.execute(
        sa.select(shipments.c.id)
        .where(
            shipments.c.merchant_id == merchant_id,
            sa.func.lower(shipments.c.carrier) == carrier.lower(),
            shipments.c.tracking_number == tracking_number,
        )
        .order_by(shipments.c.id)
        .limit(1)
    ).first()
    return None if row is None else int(row.id)
