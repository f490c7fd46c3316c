"""Turning one stored webhook into committed state, in ONE transaction:

delivery row (unique: the idempotency of the event) → parse → locate shipment (locked) →
``domain.shipment.apply`` → history + timeline → order join + aggregate → notification
intents (unique keys) → platform events (when on: the transactional outbox of
``workers/platform_events.py``). The caller enqueues the sends (and the platform events
publisher) after the commit; the scheduler's reconciliation re-enqueues any intent whose send
message was lost in between, and publishes any platform event left unpublished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from domain.order import aggregate_order_status, extract_order_ref
from domain.payload import LabelUpdate, TrackUpdate, parse_event, parse_webhook
from domain.policy import DEFAULT_NOTIFY, Intent, NotifySettings, Recipient, plan
from domain.shipment import Change, ShipmentState, apply, detect_stall
from domain.vocabulary import Audience, ChangeKind, Channel, NotificationKind, NotificationStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store import orders as order_store
from store import platform_events as platform_event_store
from store import shipments as shipment_store
from store.database import Database, utcnow
from store.merchants import Merchant
from store.orders import Order
from store.schema import deliveries
from store.shipments import ShipmentRow
from workers.order_refs import matcher_for
from workers.platform_events import shipment_events


@dataclass(frozen=True)
class Outcome:
    status: str  # processed | ignored | duplicate
    notification_ids: tuple[int, ...] = ()
    changes: tuple[Change, ...] = ()
    carrier_lag_s: float | None = None
    shipment_id: int | None = None
    platform_events: int = 0  # rows written to the platform events outbox
    extra: Mapping[str, Any] = field(default_factory=dict)


def notify_settings(merchant: Merchant) -> NotifySettings:
    configured = merchant.notify
    if not configured:
        return DEFAULT_NOTIFY
    return {Channel(c): frozenset(NotificationKind(k) for k in kinds) for c, kinds in configured.items()}


def recipient_for(order: Order | None) -> Recipient:
    if order is None or not order.registered:
        return Recipient(email=None, phone=None, email_opt_in=False, sms_opt_in=False)
    customer = order.customer
    return Recipient(
        email=customer.get("email"),
        phone=customer.get("phone"),
        email_opt_in=order.notify_email,
        sms_opt_in=order.notify_sms,
    )


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
        merchant = merchant_store.require(conn, merchant_slug)
        inserted = conn.execute(
            db.insert(deliveries)
            .values(
                merchant_id=merchant.id,
                event_id=event_id,
                event=webhook.event[:64],
                received_at=received_at,
                processed_at=now,
                outcome="ignored" if event is None else "processed",
                body=body,
            )
            .on_conflict_do_nothing(index_elements=["merchant_id", "event_id"])
            .returning(deliveries.c.id)
        ).first()
        if inserted is None:
            return Outcome("duplicate")
        if event is None:
            return Outcome("ignored")
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
    shipment = shipment_store.locate(db, conn, merchant.id, event)
    state, changes, new_scans = apply(shipment.state, event, now)
    order, order_ref = _order_for(db, conn, merchant, shipment, event)
    shipment_store.save(
        db, conn, shipment, state, changes, new_scans,
        order_id=order.id if order and shipment.order_id is None else None,
        order_ref=order_ref if shipment.order_ref is None else None,
    )
    order_change = refresh_order_status(db, conn, order.id) if order is not None else None
    written = 0
    if platform_events:
        written = _record_platform_events(conn, merchant, order, order_change, shipment, state, changes, now)
    ids = _record_intents(db, conn, merchant, order, shipment, state, changes)
    if order is not None and order.registered and shipment.order_id is None:
        # The shipment joins a registered order only now (its transaction came after its tracks):
        # the customer has heard nothing about it yet, so tell the current state once. Same keys as
        # the live intents just stored, so nothing goes out twice.
        ids += _catch_up_shipment(db, conn, merchant, order, shipment, state)
    lag = None
    if isinstance(event, TrackUpdate) and any(c.scan_id == event.latest.object_id for c in changes):
        lag = (now - event.latest.status_date).total_seconds()
    return Outcome("processed", ids, changes, lag, shipment.id, platform_events=written)


def _order_for(
    db: Database, conn: Connection, merchant: Merchant, shipment: ShipmentRow, event: TrackUpdate | LabelUpdate
) -> tuple[Order | None, str | None]:
    """The shipment's order, row-locked after the shipment (the lock order everywhere), so that
    a platform registering the order at this moment is either fully seen or fully waited for."""
    if shipment.order_id is not None:
        return order_store.get_by_id(conn, shipment.order_id, lock=db), None
    try:
        ref = extract_order_ref(event.metadata, matcher_for(merchant.order_ref_pattern, merchant.slug))
    except ValueError:  # a pattern RE2 cannot run (saved before it was required): no order ref
        ref = None
    if ref is None:
        return None, None
    created = order_store.ensure(db, conn, merchant.id, ref)
    return order_store.get_by_id(conn, created.id, lock=db), ref


def refresh_order_status(db: Database, conn: Connection, order_id: int) -> tuple[str, str]:
    """Lock the order, then aggregate its shipments (shipment → order lock order everywhere).
    Returns the order's ``(old, new)`` aggregate status."""
    locked = conn.execute(db.for_update(order_store.orders.select().where(order_store.orders.c.id == order_id))).one()
    siblings = shipment_store.for_order(conn, order_id)
    status = aggregate_order_status([(s.state.status, s.state.exception.cls if s.state.exception else None) for s in siblings])
    open_exc = next((s.state.exception.cls.value for s in siblings if s.state.exception), None)
    order_store.set_status(conn, order_id, status.value, open_exc)
    return str(locked.status), status.value


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
        order=(order.id, order.ref, order_change[1]) if order is not None and order_change is not None else None,
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
) -> tuple[int, ...]:
    if not changes:
        return ()
    intents = plan(
        changes,
        state,
        recipient_for(order),
        notify_settings(merchant),
        order_ref=order.ref if order else f"shipment-{shipment.id}",
        shipment_key=shipment.key,
        # A registered order's customer not being told (kind off, no phone, not opted in) is
        # recorded as `suppressed` with the reason. Before registration nothing is recorded:
        # the contact is not known *yet*, and registering sends the current state (catch-up).
        include_suppressed=order is not None and order.registered,
    )
    return store_intents(db, conn, merchant, order, shipment.id, intents)


#: Why a planned notification was not sent, as shown in the order's notification list.
SUPPRESSION_REASONS = {
    "kind_disabled": "kind disabled for this channel (merchant notify settings)",
    "no_contact": "no contact address for this channel",
    "opted_out": "customer did not opt in to this channel",
}


def store_intents(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    order: Order | None,
    shipment_id: int | None,
    intents: Sequence[Intent],
    context: Mapping[str, Any] | None = None,
) -> tuple[int, ...]:
    ids: list[int] = []
    for intent in intents:
        status, error = NotificationStatus.QUEUED.value, None
        if intent.audience == Audience.MERCHANT:
            to = merchant.alert_email
            if not to:
                status, error = NotificationStatus.SUPPRESSED.value, "merchant has no alert_email"
        else:
            to = (order.customer.get("email") if intent.channel == Channel.EMAIL else order.customer.get("phone")) if order else None
        if intent.suppressed:
            status = NotificationStatus.SUPPRESSED.value
            error = SUPPRESSION_REASONS.get(intent.suppressed, intent.suppressed)
        new_id = notification_store.create(
            db,
            conn,
            merchant_id=merchant.id,
            order_id=order.id if order else None,
            shipment_id=shipment_id,
            kind=intent.kind.value,
            channel=intent.channel.value,
            audience=intent.audience.value,
            key=intent.key,
            to_address=to,
            status=status,
            context={**({"occurrence": intent.occurrence} if intent.occurrence else {}), **(context or {})},
            error=error,
        )
        if new_id is not None and status == NotificationStatus.QUEUED.value:
            ids.append(new_id)
    return tuple(ids)


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


def catch_up(db: Database, conn: Connection, merchant: Merchant, order: Order) -> tuple[int, ...]:
    """When the platform registers an order after Shippo spoke first, tell the customer the
    CURRENT state once (``shipped``, ``out_for_delivery``… never the stale steps in between).
    Keys are the same as live notifications, so nothing already sent goes out twice."""
    ids: list[int] = []
    for shipment in shipment_store.for_order(conn, order.id, lock=db):
        ids.extend(_catch_up_shipment(db, conn, merchant, order, shipment, shipment.state))
    return tuple(ids)


def _catch_up_shipment(
    db: Database, conn: Connection, merchant: Merchant, order: Order, shipment: ShipmentRow, state: ShipmentState
) -> tuple[int, ...]:
    """Customer intents for the CURRENT state of one shipment (its status, its open exception)."""
    if state.status is None or state.last_event_at is None:
        return ()
    synthetic = [Change(ChangeKind.STATUS_CHANGED, state.last_event_at, None, state.status)]
    if state.exception is not None:
        exc = state.exception
        synthetic.append(
            Change(ChangeKind.EXCEPTION_OPENED, exc.since, None, state.status, exc.cls, exc.occurrence,
                   exc.detail, None, exc.action_required)
        )
    customer_only = [i for i in plan(synthetic, state, recipient_for(order), notify_settings(merchant),
                                     order_ref=order.ref, shipment_key=shipment.key)
                     if i.audience == Audience.CUSTOMER]
    return store_intents(db, conn, merchant, order, shipment.id, customer_only)


def utc_now() -> datetime:
    return utcnow()
