"""Turning one stored webhook into committed state, in ONE transaction:

delivery row (unique: the idempotency of the event) → parse → locate shipment (locked) →
``domain.shipment.apply`` → history + timeline → order join + aggregate → notification
intents (unique keys) → platform events (when on: the transactional outbox of
``workers/platform_events.py``). The caller enqueues the sends (and the platform events
publisher) after the commit; the scheduler's reconciliation re-enqueues any intent whose send
message was lost in between, and publishes any platform event left unpublished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from domain.order import Parcels, extract_order_ref, parcels_of
from domain.payload import LabelUpdate, TrackUpdate, parse_event, parse_webhook
from domain.policy import plan
from domain.shipment import Change, ShipmentState, apply, detect_stall
from domain.vocabulary import ChangeKind, ProcessingOutcome
from store import deliveries as delivery_store
from store import merchants as merchant_store
from store import orders as order_store
from store import platform_events as platform_event_store
from store import shipments as shipment_store
from store.database import Database
from store.merchants import Merchant
from store.orders import Order
from store.shipments import ShipmentRow
from workers.intents import notify_settings, recipient_for, store_intents
from workers.order_refs import matcher_for
from workers.orders import catch_up_shipment, refresh_order_status
from workers.parcels import parcels_of_order
from workers.platform_events import shipment_events


@dataclass(frozen=True)
class Outcome:
    status: ProcessingOutcome
    notification_ids: tuple[int, ...] = ()
    changes: tuple[Change, ...] = ()
    carrier_lag_s: float | None = None
    shipment_id: int | None = None
    platform_events: int = 0  # rows written to the platform events outbox


def process_event(
    db: Database,
    merchant_slug: str,
    event_id: str,
    received_at: datetime,
    body: str,
    now: datetime,
    *,
    platform_events: bool = False,
) -> Outcome:
    """``platform_events``: write the platform events outbox rows (the feature is on)."""
    webhook = parse_webhook(body)  # pure: parsed before the transaction, outcome known up front
    event = parse_event(webhook)
    with db.write() as conn:
        merchant, fresh = delivery_store.record_for(
            db,
            conn,
            merchant_slug,
            event_id=event_id,
            event=webhook.event[:64],
            received_at=received_at,
            processed_at=now,
            outcome="ignored" if event is None else "processed",
            body=body,
        )
        if not fresh:
            return Outcome(ProcessingOutcome.DUPLICATE)
        if event is None:
            return Outcome(ProcessingOutcome.IGNORED)
        return _apply_event(db, conn, merchant, event, now, platform_events=platform_events)


def _apply_event(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    event: TrackUpdate | LabelUpdate,
    now: datetime,
    *,
    platform_events: bool = False,
) -> Outcome:
    shipment, located_order = order_store.locate_with_order(db, conn, merchant.id, event)
    state, changes, new_scans = apply(shipment.state, event, now)
    order, order_ref, others = _order_for(db, conn, merchant, shipment, event, located_order)
    saved_others = shipment_store.save(
        db,
        conn,
        shipment,
        state,
        changes,
        new_scans,
        order_id=order.id if order and shipment.order_id is None else None,
        order_ref=order_ref if shipment.order_ref is None else None,
        siblings_of=order.id if order is not None and others is None else None,
    )
    others = others if others is not None else saved_others or []
    # The order's shipments after this update, without reading them again: those read under the
    # order's lock (nothing else can change them before the commit), this one with its new state.
    parcel_rows = (
        sorted([*others, replace(shipment, order_id=order.id, state=state)], key=lambda s: s.id)
        if order is not None
        else None
    )
    order_change = (
        refresh_order_status(db, conn, order.id, locked=order, shipments=parcel_rows)
        if order is not None
        else None
    )
    written = 0
    if platform_events:
        written = _record_platform_events(conn, merchant, order, order_change, shipment, state, changes, now)
    parcels = parcels_of([s.state.status for s in parcel_rows]) if parcel_rows is not None else None
    ids = _record_intents(db, conn, merchant, order, shipment, state, changes, parcels=parcels)
    if order is not None and order.registered and shipment.order_id is None:
        # The shipment joins a registered order only now (its transaction came after its tracks):
        # the customer has heard nothing about it yet, so tell the current state once. Same keys as
        # the live intents just stored, so nothing goes out twice.
        ids += catch_up_shipment(db, conn, merchant, order, shipment, state, parcels=parcels)
    lag = None
    if isinstance(event, TrackUpdate) and any(c.scan_id == event.latest.object_id for c in changes):
        lag = (now - event.latest.status_date).total_seconds()
    return Outcome(ProcessingOutcome.PROCESSED, ids, changes, lag, shipment.id, platform_events=written)


def _order_for(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    shipment: ShipmentRow,
    event: TrackUpdate | LabelUpdate,
    located: tuple[Order, list[ShipmentRow]] | None = None,
) -> tuple[Order | None, str | None, list[ShipmentRow] | None]:
    """The shipment's order, row-locked after the shipment (the lock order everywhere), so that
    a platform registering the order at this moment is either fully seen or fully waited for;
    and, when read in the same statement (SQLite), the order's OTHER shipments (else ``None``:
    the save reads them, after the lock was granted). ``located``: the order and its shipments
    as read with the shipment (``store.orders.locate_with_order``)."""
    if shipment.order_id is not None:
        order, rows = located or order_store.with_shipments(db, conn, order_id=shipment.order_id)
        ref = None
    else:
        try:
            ref = extract_order_ref(event.metadata, matcher_for(merchant.order_ref_pattern, merchant.slug))
        except ValueError:  # a pattern RE2 cannot run (saved before it was required): no order ref
            ref = None
        if ref is None:
            return None, None, []
        order, rows = order_store.with_shipments(db, conn, merchant_id=merchant.id, ref=ref)
    return order, ref, None if rows is None else [s for s in rows if s.id != shipment.id]


def _record_platform_events(
    conn: Connection,
    merchant: Merchant,
    order: Order | None,
    order_change: tuple[str, str] | None,
    shipment: ShipmentRow,
    state: ShipmentState,
    changes: Sequence[Change],
    now: datetime,
) -> int:
    """The platform events outbox rows of this update, in its transaction (see
    ``workers/platform_events.py``). ``shipment.state`` is the state before the update."""
    events = shipment_events(
        merchant_slug=merchant.slug,
        order=(order.id, order.ref, order_change[1])
        if order is not None and order_change is not None
        else None,
        order_change=order_change,
        shipment_id=shipment.id,
        state=state,
        exception_before=shipment.state.exception,
        changes=changes,
        now=now,
    )
    return platform_event_store.add(conn, merchant.id, events, now=now)


def _record_intents(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    order: Order | None,
    shipment: ShipmentRow,
    state: ShipmentState,
    changes: Sequence[Change],
    *,
    parcels: Parcels | None = None,
) -> tuple[int, ...]:
    """``parcels``: the order's parcels after this update, when the caller has them (else read)."""
    if not changes:
        return ()
    intents = plan(
        changes,
        state,
        recipient_for(order),
        notify_settings(merchant),
        order_ref=order.ref if order else f"shipment-{shipment.id}",
        shipment_key=shipment.key,
        # A registered order's customer not being told (kind off, no phone, not opted in, a
        # test-mode shipment) is recorded as `suppressed` with the reason. Before registration
        # nothing is recorded: the contact is not known *yet*, and registering sends the current
        # state (catch-up).
        include_suppressed=order is not None and order.registered,
        notify_test_events=merchant.notify_test_events is True,
        # the order's parcels after this update (its row is locked): several → partially_delivered
        # and the one order-level delivered (domain/policy.py); only a status move can change them
        parcels=(parcels if parcels is not None else parcels_of_order(conn, order.id))
        if order is not None and any(c.kind is ChangeKind.STATUS_CHANGED for c in changes)
        else None,
    )
    return store_intents(db, conn, merchant, order, shipment.id, intents)


def detect_stalls(
    db: Database, *, now: datetime, stall_after: timedelta, limit: int = 1000, platform_events: bool = False
) -> list[int]:
    """Scheduler job: open ``stalled`` on quiet shipments; returns notification ids to send.
    ``platform_events``: also write the platform events outbox rows (the feature is on)."""
    from domain.shipment import TERMINAL

    with db.read() as conn:
        candidates = shipment_store.stall_candidates(
            conn, older_than=now - stall_after, terminal=[s.value for s in TERMINAL], limit=limit
        )
    ids: list[int] = []
    for shipment_id in candidates:
        with db.write() as conn:
            shipment = shipment_store.get_locked(db, conn, shipment_id)
            state, changes = detect_stall(shipment.state, now, stall_after)
            if not changes:
                continue
            shipment_store.save(db, conn, shipment, state, changes, ())
            merchant = merchant_store.get_by_id(conn, shipment.merchant_id)
            order = order_store.get_by_id(conn, shipment.order_id) if shipment.order_id else None
            order_change = refresh_order_status(db, conn, order.id) if order is not None else None
            if platform_events:
                _record_platform_events(conn, merchant, order, order_change, shipment, state, changes, now)
            ids.extend(_record_intents(db, conn, merchant, order, shipment, state, changes))
    return ids
