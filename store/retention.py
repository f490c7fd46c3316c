"""Retention and erasure of customers' personal data.

**Retention** (:func:`purge_expired`, run by the scheduler's ``retention`` job): raw webhook
bodies (``deliveries.body``: Shippo's JSON carries the parcel's addresses) are removed after
``PARCELHOOK_RETAIN_BODIES_DAYS``, rendered messages (``notifications`` subject and bodies,
``outbox_messages`` subject, text, HTML and headers, whose ``List-Unsubscribe`` carries the
address) and merchant-alert context after ``PARCELHOOK_RETAIN_MESSAGES_DAYS``. The rows stay,
with their metadata: ids, kinds, channels, statuses, timestamps, provider ids, recipients.

A removed body is represented as ``NULL`` where the column allows it and as the empty string
where it does not (``deliveries.body``, ``outbox_messages.text``: an accepted webhook body is a
JSON object and a rendered message is never empty, so ``""`` means only *removed*). An outbox
row also gets the header :data:`REMOVED_HEADER` naming why (``retention`` or ``erasure``).

Work is done in bounded batches: each batch is one short write transaction that picks at most
``batch`` ids (keyset on ``id``, so rows already stripped are never scanned twice in a run) and
strips them, and a run stops after ``max_batches`` batches per table. A backlog of millions is
worked off over several runs without ever holding a long lock.

**Erasure** (:func:`erase_customer`, ``DELETE /api/merchants/<m>/customers``): one transaction
removes a customer's name, email and phone from their orders, masks the recipient and removes
the bodies of their notifications and outbox messages (and suppresses those not sent yet),
removes the raw bodies of the webhooks about their shipments, and records an opt-out so that
nothing is sent to the address again. The opt-out row (the address in its comparison form) is
the one place the identifier stays: it is what keeps it from being written to again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from domain.vocabulary import Audience, Channel, NotificationStatus
from store import notifications as notification_store
from store.contacts import opt_out_key
from store.database import Database, utcnow
from store.schema import deliveries, notifications, orders, outbox_messages, shipments

#: Rows stripped per statement, and batches per table per run (the per-run cap).
BATCH = 500
MAX_BATCHES = 200

#: What a NOT NULL body column holds once its body was removed.
REMOVED = ""
#: Outbox header naming why a message's content was removed (``retention`` / ``erasure``).
REMOVED_HEADER = notification_store.REMOVED_HEADER
RETENTION = "retention"
ERASURE = "erasure"

#: Customer fields an erasure keeps: they say how to write, not who to.
KEPT_CUSTOMER_FIELDS = ("locale", "timezone")
ERASED_REASON = "customer data erased on request"
OPT_OUT_SOURCE = "erasure"


@dataclass(frozen=True)
class _Target:
    """One kind of body to strip: its table, the moment its age counts from, what says it still
    holds content, and the values that strip it."""

    name: str
    table: sa.Table
    age: sa.ColumnElement[Any]
    holds: sa.ColumnElement[bool]
    stripped: Mapping[str, Any]


_DELIVERIES = _Target(
    "deliveries", deliveries, deliveries.c.received_at, deliveries.c.body != REMOVED, {"body": REMOVED}
)
_OUTBOX = _Target(
    "outbox",
    outbox_messages,
    outbox_messages.c.created_at,
    outbox_messages.c.text != REMOVED,
    {"subject": None, "text": REMOVED, "html": None, "headers": {REMOVED_HEADER: RETENTION}},
)
_IS_ALERT = notifications.c.audience == Audience.MERCHANT.value
_NOTIFICATIONS = _Target(
    "notifications",
    notifications,
    notifications.c.created_at,
    sa.or_(
        notifications.c.subject.is_not(None),
        notifications.c.body_text.is_not(None),
        notifications.c.body_html.is_not(None),
        sa.and_(_IS_ALERT, notifications.c.context.is_not(None)),
    ),
    {
        "subject": None,
        "body_text": None,
        "body_html": None,
        # a merchant alert's context repeats the customer's masked address and provider errors
        "context": sa.case((_IS_ALERT, sa.null()), else_=notifications.c.context),
    },
)


@dataclass(frozen=True)
class Purged:
    """What one run stripped: rows per table, batches (one select + one update each) per table,
    and whether every table was worked off (``False``: the per-run cap stopped it)."""

    rows: Mapping[str, int]
    batches: Mapping[str, int]
    complete: bool


def purge_expired(
    db: Database,
    *,
    now: datetime,
    bodies_days: int,
    messages_days: int,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> Purged:
    """Strip webhook bodies older than ``bodies_days`` and rendered messages older than
    ``messages_days`` (counted back from ``now``), ``batch`` rows per statement, at most
    ``max_batches`` batches per table."""
    rows: dict[str, int] = {}
    batches: dict[str, int] = {}
    complete = True
    for target, days in (
        (_DELIVERIES, bodies_days),
        (_OUTBOX, messages_days),
        (_NOTIFICATIONS, messages_days),
    ):
        stripped, loops, done = _strip(db, target, now - timedelta(days=days), batch, max_batches)
        rows[target.name], batches[target.name] = stripped, loops
        complete = complete and done
    return Purged(rows, batches, complete)


def _strip(
    db: Database, target: _Target, cutoff: datetime, batch: int, max_batches: int
) -> tuple[int, int, bool]:
    table_id = target.table.c.id
    pick = (
        sa.select(table_id)
        .where(table_id > sa.bindparam("after"), target.age < cutoff, target.holds)
        .order_by(table_id)
        .limit(batch)
    )
    strip = target.table.update().where(table_id.in_(sa.bindparam("ids", expanding=True)))
    after, total, loops = 0, 0, 0
    while loops < max_batches:
        with db.write() as conn:
            ids = [int(r.id) for r in conn.execute(pick, {"after": after})]
            if not ids:
                return total, loops, True
            conn.execute(strip.values(**target.stripped), {"ids": ids})
        loops += 1
        total += len(ids)
        after = ids[-1]
        if len(ids) < batch:
            return total, loops, True
    return total, loops, False


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True)
class Erased:
    orders: int
    notifications: int
    outbox: int
    deliveries: int
    opted_out: bool

    def to_public(self) -> dict[str, Any]:
        """Every field by name, in declaration order (the erasure route's body)."""
        return asdict(self)


def erase_customer(db: Database, merchant_id: int, *, channel: Channel, address: str) -> Erased:
    """Erase the customer of ``merchant_id`` known by ``address`` (an email for
    ``Channel.EMAIL``, an E.164 phone for ``Channel.SMS``, normalized by the caller).
    Idempotent: a second call finds nothing left and erases nothing.

    Lock order is the sender's and the worker's: notifications, then shipments, then orders
    (``workers/sending.py`` locks a notification, then its shipment; processing a shipment,
    then its order)."""
    key = opt_out_key(channel.value, address)
    field = "email" if channel is Channel.EMAIL else "phone"
    now = utcnow()
    with db.write() as conn:
        order_ids = _orders_of(conn, merchant_id, field, key)
        notification_ids = _notifications_of(conn, merchant_id, order_ids, channel, key)
        erased_notifications = _erase_notifications(db, conn, notification_ids, now)
        erased_outbox = _erase_outbox(conn, notification_ids)
        shipment_rows = _shipments_of(db, conn, order_ids)
        erased_orders = _erase_orders(conn, order_ids, now)
        erased_deliveries = _erase_deliveries(conn, merchant_id, shipment_rows)
        notification_store.opt_out(db, conn, merchant_id, channel.value, address, OPT_OUT_SOURCE)
    return Erased(erased_orders, erased_notifications, erased_outbox, erased_deliveries, True)


def _orders_of(conn: Connection, merchant_id: int, field: str, key: str) -> list[int]:
    """The merchant's orders whose customer has this address (compared in opt-out form)."""
    stored = sa.func.lower(sa.func.trim(orders.c.customer[field].as_string()))
    query = (
        sa.select(orders.c.id).where(orders.c.merchant_id == merchant_id, stored == key).order_by(orders.c.id)
    )
    return [int(r.id) for r in conn.execute(query)]


def _notifications_of(
    conn: Connection, merchant_id: int, order_ids: Sequence[int], channel: Channel, key: str
) -> list[int]:
    """Notifications about those orders (the customer's and the merchant's alerts about them),
    and the customer's own wherever their address was written (an order since re-registered
    with another address still has notifications to the old one)."""
    to_them = sa.and_(
        notifications.c.audience == Audience.CUSTOMER.value,
        notifications.c.channel == channel.value,
        sa.func.lower(sa.func.trim(notifications.c.to_address)) == key,
    )
    about = notifications.c.order_id.in_(order_ids) if order_ids else sa.false()
    query = (
        sa.select(notifications.c.id)
        .where(notifications.c.merchant_id == merchant_id, sa.or_(about, to_them))
        .order_by(notifications.c.id)
    )
    return [int(r.id) for r in conn.execute(query)]


_UNSENT = (NotificationStatus.QUEUED.value, NotificationStatus.DEFERRED.value)


def _erase_notifications(db: Database, conn: Connection, ids: Sequence[int], now: datetime) -> int:
    if not ids:
        return 0
    rows = conn.execute(
        db.for_update(
            sa.select(
                notifications.c.id,
                notifications.c.audience,
                notifications.c.status,
                notifications.c.to_address,
                notifications.c.error,
            )
            .where(notifications.c.id.in_(ids))
            .order_by(notifications.c.id)
        )
    ).all()
    erased = 0
    for r in rows:
        customer = r.audience == Audience.CUSTOMER.value
        to_address = notification_store.mask(r.to_address) if customer else r.to_address
        values: dict[str, Any] = {
            "subject": None,
            "body_text": None,
            "body_html": None,
            "updated_at": now,
            "to_address": to_address,
            "error": _scrub(r.error, r.to_address),  # a provider's error text can quote the address
        }
        if not customer:
            values["context"] = sa.null()  # an alert's context quotes the customer's details
        if r.status in _UNSENT:
            values.update(
                status=NotificationStatus.SUPPRESSED.value,
                error=ERASED_REASON,
                error_code=None,
                scheduled_for=None,
            )
        conn.execute(notifications.update().where(notifications.c.id == r.id).values(**values))
        erased += 1
    return erased


def _scrub(error: str | None, address: str | None) -> str | None:
    if error is None or not address:
        return error
    return error.replace(address, notification_store.mask(address) or "")


def _erase_outbox(conn: Connection, notification_ids: Sequence[int]) -> int:
    if not notification_ids:
        return 0
    rows = conn.execute(
        sa.select(outbox_messages.c.id, outbox_messages.c.to_address).where(
            outbox_messages.c.notification_id.in_(notification_ids)
        )
    ).all()
    for r in rows:
        conn.execute(
            outbox_messages.update()
            .where(outbox_messages.c.id == r.id)
            .values(
                to_address=notification_store.mask(r.to_address) or REMOVED,
                subject=None,
                text=REMOVED,
                html=None,
                headers={REMOVED_HEADER: ERASURE},
            )
        )
    return len(rows)


def _shipments_of(db: Database, conn: Connection, order_ids: Sequence[int]) -> list[Any]:
    if not order_ids:
        return []
    query = sa.select(shipments.c.id, shipments.c.transaction_id, shipments.c.tracking_number).where(
        shipments.c.order_id.in_(order_ids)
    )
    return list(conn.execute(db.for_update(query.order_by(shipments.c.id))).all())


def _erase_orders(conn: Connection, order_ids: Sequence[int], now: datetime) -> int:
    if not order_ids:
        return 0
    rows = conn.execute(
        sa.select(orders.c.id, orders.c.customer).where(orders.c.id.in_(order_ids)).order_by(orders.c.id)
    ).all()
    for r in rows:
        customer = dict(r.customer or {})
        kept = {k: customer[k] for k in KEPT_CUSTOMER_FIELDS if customer.get(k) is not None}
        conn.execute(orders.update().where(orders.c.id == r.id).values(customer=kept, updated_at=now))
    return len(rows)


def _erase_deliveries(conn: Connection, merchant_id: int, shipment_rows: Sequence[Any]) -> int:
    """Remove the raw bodies of the webhooks about these shipments. Deliveries are not linked
    to shipments by a column: a Shippo body names its shipment by the transaction's
    ``object_id`` (``transaction`` in a track) and the tracking number, so a body holding
    either as a JSON string is one of them."""
    needles = sorted(
        {f'"{value}"' for r in shipment_rows for value in (r.transaction_id, r.tracking_number) if value}
    )
    if not needles:
        return 0
    mentions = sa.or_(*(deliveries.c.body.contains(n, autoescape=True) for n in needles))
    result = conn.execute(
        deliveries.update()
        .where(deliveries.c.merchant_id == merchant_id, deliveries.c.body != REMOVED, mentions)
        .values(body=REMOVED)
    )
    return int(result.rowcount)
