"""The order application service, shared by the worker (``workers/processing.py``) and the
admin API (``PUT /api/merchants/<m>/orders/<ref>``, ``admin/orders_api.py``):

* :func:`refresh_order_status`: the order's aggregate status from its shipments;
* :func:`catch_up`: when the platform registers an order after Shippo spoke first, the
  customer hears the *current* state of each shipment once.

Lock order everywhere is shipment → order: callers hold the shipments' row locks before
these take the order's (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes writers)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from domain.order import Parcels, aggregate_order_status
from domain.policy import plan
from domain.shipment import Change, ShipmentState
from domain.vocabulary import Audience, ChangeKind
from store import orders as order_store
from store import shipments as shipment_store
from store.database import Database
from store.merchants import Merchant
from store.orders import Order
from store.shipments import ShipmentRow
from workers.intents import notify_settings, recipient_for, store_intents
from workers.parcels import parcels_of_order


def refresh_order_status(
    db: Database,
    conn: Connection,
    order_id: int,
    *,
    locked: Order | None = None,
    shipments: Sequence[ShipmentRow] | None = None,
) -> tuple[str, str]:
    """Lock the order, then aggregate its shipments (shipment → order lock order everywhere).
    Returns the order's ``(old, new)`` aggregate status. ``locked``: the order as this
    transaction already read it under its row lock (not read again); ``shipments``: with
    ``locked``, the order's shipments as they are now in this transaction, ordered by id
    (read after the lock was granted; not read again)."""
    if locked is None or locked.id != order_id:
        locked, shipments = order_store.get_by_id(conn, order_id, lock=db), None
    siblings = shipment_store.for_order(conn, order_id) if shipments is None else shipments
    status = aggregate_order_status(
        [(s.state.status, s.state.exception.cls if s.state.exception else None) for s in siblings]
    )
    open_exc = next((s.state.exception.cls.value for s in siblings if s.state.exception), None)
    order_store.set_status(conn, order_id, status.value, open_exc)
    return str(locked.status), status.value


def catch_up(db: Database, conn: Connection, merchant: Merchant, order: Order) -> tuple[int, ...]:
    """When the platform registers an order after Shippo spoke first, tell the customer the
    CURRENT state once (``shipped``, ``out_for_delivery``… never the stale steps in between).
    Keys are the same as live notifications, so nothing already sent goes out twice."""
    ids: list[int] = []
    for shipment in shipment_store.for_order(conn, order.id, lock=db):
        ids.extend(catch_up_shipment(db, conn, merchant, order, shipment, shipment.state))
    return tuple(ids)


def catch_up_shipment(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    order: Order,
    shipment: ShipmentRow,
    state: ShipmentState,
    *,
    parcels: Parcels | None = None,
) -> tuple[int, ...]:
    """Customer intents for the CURRENT state of one shipment (its status, its open exception).
    ``parcels``: the order's parcels as they are now in this transaction (else read)."""
    if state.status is None or state.last_event_at is None:
        return ()
    if parcels is None:
        parcels = parcels_of_order(conn, order.id)
    synthetic = [Change(ChangeKind.STATUS_CHANGED, state.last_event_at, None, state.status)]
    if state.exception is not None:
        exc = state.exception
        synthetic.append(
            Change(
                ChangeKind.EXCEPTION_OPENED,
                exc.since,
                None,
                state.status,
                exc.cls,
                exc.occurrence,
                exc.detail,
                None,
                exc.action_required,
            )
        )
    customer_only = [
        i
        for i in plan(
            synthetic,
            state,
            recipient_for(order),
            notify_settings(merchant),
            order_ref=order.ref,
            shipment_key=shipment.key,
            notify_test_events=merchant.notify_test_events is True,
            parcels=parcels,  # several: partially_delivered / the order's delivered
        )
        if i.audience == Audience.CUSTOMER
    ]
    return store_intents(db, conn, merchant, order, shipment.id, customer_only)
