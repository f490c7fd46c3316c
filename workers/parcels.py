"""An order's parcels, for the notification policy (``domain/order.py``, ``domain/policy.py``):

* :func:`parcels_of_order`: the order's :class:`~domain.order.Parcels` as committed now;
* :func:`superseded`: the send-time re-check of a notification against its shipment *and*, for
  ``partially_delivered`` and the order-level ``delivered``, the order's parcels. For those the
  order row is locked (after the shipment's: the shipment → order lock order everywhere), so the
  update that completes the order is either fully seen or waits for this claim to commit: a
  ``partially_delivered`` either went out before the order was wholly delivered, or not at all;
* :func:`parcels_context`: ``parcels`` and ``parcels_on_the_way`` of the ``delivered`` and
  ``partially_delivered`` templates (``notifiers/context.py``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.engine import Connection

from domain.order import Parcels, parcels_of
from domain.policy import is_superseded, order_superseded
from domain.shipment import ShipmentState
from domain.vocabulary import NotificationKind, ShipmentStatus
from notifiers.context import PARCEL_KINDS
from notifiers.links import carrier_name, shipment_tracking_url
from store import orders as order_store
from store import shipments as shipment_store
from store.database import Database
from store.merchants import Merchant
from store.notifications import NotificationRow
from store.shipments import ShipmentRow
from workers.intents import ORDER_SCOPE


def parcels_of_order(conn: Connection, order_id: int) -> Parcels:
    return parcels_of([s.state.status for s in shipment_store.for_order(conn, order_id)])


def is_order_level(n: NotificationRow) -> bool:
    return bool(n.context.get(ORDER_SCOPE))


def superseded(db: Database, conn: Connection, n: NotificationRow, state: ShipmentState | None) -> str | None:
    """The reason customer notification ``n`` is no longer true, or None (it may go out)."""
    kind = NotificationKind(n.kind)
    order_level = is_order_level(n)
    if state is not None and not order_level and is_superseded(kind, state, n.context.get("occurrence")):
        return f"superseded: shipment is now {state.status.value if state.status else 'unknown'}"
    if n.order_id is None or not (order_level or kind is NotificationKind.PARTIALLY_DELIVERED):
        return None
    order_store.get_by_id(conn, n.order_id, lock=db)
    parcels = parcels_of_order(conn, n.order_id)
    if order_superseded(kind, order_level, parcels):
        if parcels.wholly_delivered:
            return "superseded: the whole order was delivered"
        return f"superseded: {parcels.on_the_way} of the order's parcels are on the way again"
    return None


def parcels_context(
    conn: Connection, n: NotificationRow, merchant: Merchant, state: ShipmentState | None
) -> dict[str, Any]:
    """``parcels`` (every parcel of the order, delivered ones first by delivery time) and
    ``parcels_on_the_way`` for the kinds that show them; ``{}`` for the others."""
    if NotificationKind(n.kind) not in PARCEL_KINDS:
        return {}
    rows = shipment_store.for_order(conn, n.order_id) if n.order_id is not None else []
    live = [r for r in rows if r.state.status is not ShipmentStatus.REFUNDED]
    if not live and state is not None:  # a shipment without an order: itself
        return {"parcels": [_parcel(state, merchant, current=True)], "parcels_on_the_way": 0}
    live.sort(key=_arrival)
    parcels = [_parcel(r.state, merchant, current=r.id == n.shipment_id) for r in live]
    return {"parcels": parcels, "parcels_on_the_way": parcels_of([r.state.status for r in rows]).on_the_way}


def _arrival(row: ShipmentRow) -> tuple[int, str, int]:
    delivered = row.state.status is ShipmentStatus.DELIVERED and row.state.last_event_at is not None
    at = row.state.last_event_at.isoformat() if delivered and row.state.last_event_at else ""
    return (0 if delivered else 1, at, row.id)


def _parcel(state: ShipmentState, merchant: Merchant, *, current: bool) -> dict[str, Any]:
    delivered_on: date | None = None
    if state.status is ShipmentStatus.DELIVERED and state.last_event_at is not None:
        delivered_on = state.last_event_at.date()
    return {
        "carrier": state.carrier,
        "carrier_name": carrier_name(state.carrier) if state.carrier else None,
        "tracking_number": state.tracking_number,
        "tracking_url": shipment_tracking_url(state, merchant.tracking_url_template),
        "status": state.status.value if state.status else None,
        "delivered_on": delivered_on,
        "current": current,
    }
