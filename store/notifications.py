"""Notification rows: the idempotency key is written (unique) before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from domain.shipment import ShipmentState
from domain.vocabulary import NotificationStatus
from store.contacts import opt_out_key
from store.database import Database, DialectStatement, Lockable, utcnow
from store.merchant_cache import version_of
from store.orders import Order, order_of
from store.schema import notifications, opt_outs, orders, outbox_messages, shipments, templates


@dataclass(frozen=True)
class NotificationRow:
    id: int
    merchant_id: int
    order_id: int | None
    shipment_id: int | None
    kind: str
    channel: str
    audience: str
    key: str
    status: str
    to_address: str | None
    locale: str | None
    context: Mapping[str, Any]
    attempts: int
    provider_id: str | None
    sending_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    error: str | None
    error_code: str | None


def _row(r: Any) -> NotificationRow:
    return NotificationRow(
        id=r.id,
        merchant_id=r.merchant_id,
        order_id=r.order_id,
        shipment_id=r.shipment_id,
        kind=r.kind,
        channel=r.channel,
        audience=r.audience,
        key=r.idempotency_key,
        status=r.status,
        to_address=r.to_address,
        locale=r.locale,
        context=dict(r.context or {}),
        attempts=r.attempts,
        provider_id=r.provider_id,
        sending_at=r.sending_at,
        created_at=r.created_at,
        sent_at=r.sent_at,
        error=r.error,
        error_code=r.error_code,
    )


_INSERT = DialectStatement(
    lambda insert: (
        insert(notifications)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(notifications.c.id, notifications.c.idempotency_key)
    )
)


_BY_ID = Lockable(sa.select(notifications).where(notifications.c.id == sa.bindparam("notification_id")))
_UPDATE = notifications.update().where(notifications.c.id == sa.bindparam("notification_id"))


def create(db: Database, conn: Connection, row: Mapping[str, Any]) -> int | None:
    """Insert one new intent (a row from :func:`new_row`); returns its id, or None when its key
    already exists (a repeat)."""
    return create_many(db, conn, [row]).get(row["idempotency_key"])


def new_row(
    *,
    merchant_id: int,
    order_id: int | None,
    shipment_id: int | None,
    kind: str,
    channel: str,
    audience: str,
    key: str,
    to_address: str | None,
    status: str = NotificationStatus.QUEUED.value,
    context: Mapping[str, Any] | None = None,
    error: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The values of one notification row for :func:`create` and :func:`create_many`."""
    now = now or utcnow()
    return {
        "merchant_id": merchant_id,
        "order_id": order_id,
        "shipment_id": shipment_id,
        "kind": kind,
        "channel": channel,
        "audience": audience,
        "idempotency_key": key,
        "status": status,
        "to_address": to_address,
        "context": dict(context or {}),
        "error": error,
        "created_at": now,
        "updated_at": now,
    }


def create_many(db: Database, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Insert new intents (rows from :func:`new_row`) in one statement; returns ``{key: id}`` of
    the rows written (a key that already exists, a repeat, is not in it)."""
    if not rows:
        return {}
    result = conn.execute(_INSERT(db), list(rows) if len(rows) > 1 else rows[0])
    return {r.idempotency_key: int(r.id) for r in result}


def get(conn: Connection, notification_id: int, *, lock: Database | None = None) -> NotificationRow | None:
    row = conn.execute(_BY_ID(lock), {"notification_id": notification_id}).first()
    return _row(row) if row else None


def update(conn: Connection, notification_id: int, **values: Any) -> None:
    conn.execute(_UPDATE, {"updated_at": utcnow(), **values, "notification_id": notification_id})


_UPDATE_RETURNING = _UPDATE.returning(*notifications.c)


def update_returning(conn: Connection, notification_id: int, **values: Any) -> NotificationRow | None:
    """:func:`update`, returning the row as written (None: no such notification): one statement."""
    row = conn.execute(
        _UPDATE_RETURNING, {"updated_at": utcnow(), **values, "notification_id": notification_id}
    ).first()
    return _row(row) if row else None


# ---------------------------------------------------------------- what a send reads


@dataclass(frozen=True)
class SendView:
    """What the send of one notification reads, in one statement (:func:`for_send`)."""

    notification: NotificationRow
    merchant_version: datetime  # its merchant's stored ``updated_at`` (store/merchant_cache.py)
    order: Order | None
    shipment: ShipmentState | None
    #: Whether the recipient opted out of the channel; None when the stored address is not in
    #: its compared form, so one exact match cannot tell (then ask :func:`is_opted_out`).
    opted_out: bool | None
    #: Whether the merchant stores any template of this kind and channel (any locale): when not,
    #: the template lookup (store/templates.py ``find``) has nothing to find.
    has_templates: bool


_ORDER_COLUMNS = [c.label(f"o_{c.name}") for c in orders.c]


def _any_row(table: sa.Table, label: str, **matching: str) -> Any:
    """Whether ``table`` has a row of the notification's merchant whose columns equal the
    notification's (``column="notification column"``)."""
    return (
        sa.exists()
        .where(
            table.c.merchant_id == notifications.c.merchant_id,
            *(table.c[column] == notifications.c[theirs] for column, theirs in matching.items()),
        )
        .label(label)
    )


_SEND_COLUMNS: tuple[Any, ...] = (
    notifications,
    version_of(notifications.c.merchant_id).label("merchant_updated_at"),
    *_ORDER_COLUMNS,
    _any_row(opt_outs, "opted_out_exact", channel="channel", address="to_address"),
    _any_row(templates, "has_templates", kind="kind", channel="channel"),
)
_WITH_ORDER = notifications.outerjoin(orders, orders.c.id == notifications.c.order_id)


def _send_select(*, shipment: bool) -> Lockable:
    """The notification with its order, and (``shipment``) its shipment's state; on PostgreSQL
    the notification row and the shipment row are locked by the same statement (the order is
    not: the send reads its contact; ``workers/parcels.py`` locks it where the policy needs)."""
    if shipment:
        query = (
            sa.select(*_SEND_COLUMNS, shipments.c.state.label("s_state"))
            .select_from(_WITH_ORDER.join(shipments, shipments.c.id == notifications.c.shipment_id))
            .where(notifications.c.id == sa.bindparam("notification_id"))
        )
        locked = [notifications, shipments]
    else:
        query = (
            sa.select(*_SEND_COLUMNS)
            .select_from(_WITH_ORDER)
            .where(notifications.c.id == sa.bindparam("notification_id"))
        )
        locked = [notifications]
    lockable = Lockable(query)
    lockable.locking = query.with_for_update(of=locked)  # never the nullable side of the join
    return lockable


_SEND_WITH_SHIPMENT = _send_select(shipment=True)
_SEND_WITHOUT_SHIPMENT = _send_select(shipment=False)


def for_send(db: Database, conn: Connection, notification_id: int) -> SendView | None:
    """The notification (locked, on PostgreSQL), its merchant's version, its order, its
    shipment's state (locked: a later scan waits for this transaction, or this one sees it),
    whether its recipient opted out, and whether the merchant has templates for it: one
    statement when the notification has a shipment (nearly all), else two. None: no such row."""
    params = {"notification_id": notification_id}
    row = conn.execute(_SEND_WITH_SHIPMENT(db), params).first()
    state: ShipmentState | None = None
    if row is not None:
        state = ShipmentState.from_dict(row.s_state)
    else:
        row = conn.execute(_SEND_WITHOUT_SHIPMENT(db), params).first()
        if row is None:
            return None
        if row.shipment_id is not None:  # the inner join found no shipment row: fail as before
            raise sa.exc.NoResultFound(f"shipment {row.shipment_id} of notification {notification_id}")
    n = _row(row)
    order: Order | None = None
    if n.order_id is not None:
        if row.o_id is None:  # no such order row: fail as a lookup by id does
            raise sa.exc.NoResultFound(f"order {n.order_id} of notification {notification_id}")
        order = order_of(row, "o_")
    opted_out: bool | None = None
    if n.to_address and _opt_out_addresses(n.channel, n.to_address) == [n.to_address]:
        opted_out = bool(row.opted_out_exact)
    return SendView(
        notification=n,
        merchant_version=row.merchant_updated_at,
        order=order,
        shipment=state,
        opted_out=opted_out,
        has_templates=bool(row.has_templates),
    )


def mark_suppressed(conn: Connection, notification_id: int, reason: str) -> None:
    """Withheld at send time: the reason replaces whatever an earlier attempt left (a transient
    provider error and its code say nothing about a message that is not going to be sent)."""
    update(
        conn,
        notification_id,
        status=NotificationStatus.SUPPRESSED.value,
        error=reason,
        error_code=None,
        sending_at=None,
    )


def record_sent(conn: Connection, notification_id: int, *, provider_id: str, sent_at: datetime) -> None:
    """The provider accepted it: ``sent`` with its id; errors of earlier attempts no longer apply."""
    update(
        conn,
        notification_id,
        status=NotificationStatus.SENT.value,
        provider_id=provider_id,
        sent_at=sent_at,
        error=None,
        error_code=None,
    )


def by_provider_id(conn: Connection, provider_id: str) -> NotificationRow | None:
    row = conn.execute(sa.select(notifications).where(notifications.c.provider_id == provider_id)).first()
    return _row(row) if row else None


def for_order(conn: Connection, order_id: int) -> list[NotificationRow]:
    rows = conn.execute(
        sa.select(notifications).where(notifications.c.order_id == order_id).order_by(notifications.c.id)
    )
    return [_row(r) for r in rows]


def stuck(conn: Connection, *, status: str, older_than: datetime, limit: int = 500) -> list[int]:
    """Rows whose send message may have been lost (a worker died between commit and enqueue).

    Only rows no attempt ever claimed: once an attempt has run, dramatiq's own retry message
    owns the row (re-enqueueing it too would race that retry)."""
    return _ids(
        conn, limit, notifications.c.status == status, notifications.c.updated_at < older_than, *_UNCLAIMED
    )


def deferred_overdue(conn: Connection, *, cutoff: datetime, limit: int = 500) -> list[int]:
    """``deferred`` rows no attempt ever claimed whose moment (``scheduled_for``) and last
    change both lie before ``cutoff``: their delayed send message vanished. One query; rows
    still waiting for their moment never take a place in ``limit``."""
    return _ids(
        conn,
        limit,
        notifications.c.status == NotificationStatus.DEFERRED.value,
        notifications.c.updated_at < cutoff,
        notifications.c.scheduled_for < cutoff,
        *_UNCLAIMED,
    )


# rows no attempt ever claimed (once one has, dramatiq's own retry message owns the row)
_UNCLAIMED = (notifications.c.attempts == 0, notifications.c.sending_at.is_(None))


def _ids(conn: Connection, limit: int, *conditions: sa.ColumnElement[bool]) -> list[int]:
    """Ids of the notifications matching every condition, oldest first, at most ``limit``."""
    query = sa.select(notifications.c.id).where(*conditions).order_by(notifications.c.id).limit(limit)
    return [r.id for r in conn.execute(query)]


def overdue_retries(conn: Connection, *, older_than: datetime, limit: int = 500) -> list[int]:
    """Rows an attempt already touched whose retry should have run long ago: ``queued`` and
    untouched since ``older_than``, or ``deferred`` with ``scheduled_for`` before it.

    ``older_than`` must lie beyond the longest retry backoff (plus the time limit), so that
    no live retry message can still own the row: then its message was lost or stranded (a
    broker that lost data, a worker that dropped its delay queue). A re-enqueued twin is
    safe: the send's claim makes a finished row a no-op and a claim in flight a wait."""
    return _ids(
        conn,
        limit,
        notifications.c.attempts > 0,
        notifications.c.updated_at < older_than,
        sa.or_(
            notifications.c.status == NotificationStatus.QUEUED.value,
            sa.and_(
                notifications.c.status == NotificationStatus.DEFERRED.value,
                notifications.c.scheduled_for < older_than,
            ),
        ),
    )


def recent(conn: Connection, *, merchant_id: int | None, limit: int) -> list[NotificationRow]:
    query = sa.select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    if merchant_id is not None:
        query = query.where(notifications.c.merchant_id == merchant_id)
    return [_row(r) for r in conn.execute(query)]


def mask(address: str | None) -> str | None:
    """``j***@example.com`` / ``+1415*****23``: enough to recognise, not to harvest."""
    if not address:
        return address
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:5] + "*" * max(len(address) - 7, 0) + address[-2:]


def to_public(n: NotificationRow) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind,
        "channel": n.channel,
        "audience": n.audience,
        "status": n.status,
        "to": mask(n.to_address),
        "created_at": n.created_at.isoformat(),
        "sent_at": n.sent_at.isoformat() if n.sent_at else None,
        "provider_id": n.provider_id,
        "error": n.error,
        "error_code": n.error_code,
    }


# ---------------------------------------------------------------- opt-outs


# Rows are stored under ``opt_out_key`` (E.164 for SMS, lower-cased email) and looked up under
# it, so a STOP from ``+14155550155`` meets a customer saved as ``+1 (415) 555-0155``. Lookups
# also try the plain lower-cased address: rows written before keys were normalized stored that.


def _opt_out_addresses(channel: str, address: str) -> list[str]:
    return sorted({opt_out_key(channel, address), address.lower()})


def opt_out(
    db: Database, conn: Connection, merchant_id: int, channel: str, address: str, source: str
) -> None:
    conn.execute(
        db.insert(opt_outs)
        .values(
            merchant_id=merchant_id,
            channel=channel,
            address=opt_out_key(channel, address),
            source=source,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )


def opt_in(conn: Connection, merchant_id: int, channel: str, address: str) -> None:
    conn.execute(
        opt_outs.delete().where(
            opt_outs.c.merchant_id == merchant_id,
            opt_outs.c.channel == channel,
            opt_outs.c.address.in_(_opt_out_addresses(channel, address)),
        )
    )


def is_opted_out(conn: Connection, merchant_id: int, channel: str, address: str) -> bool:
    row = conn.execute(
        _OPTED_OUT,
        {"merchant_id": merchant_id, "channel": channel, "addresses": _opt_out_addresses(channel, address)},
    ).first()
    return row is not None


_OPTED_OUT = sa.select(opt_outs.c.id).where(
    opt_outs.c.merchant_id == sa.bindparam("merchant_id"),
    opt_outs.c.channel == sa.bindparam("channel"),
    opt_outs.c.address.in_(sa.bindparam("addresses", expanding=True)),
)


# ---------------------------------------------------------------- outbox


def outbox_put(db: Database, conn: Connection, *, idempotency_key: str, **message: Any) -> int | None:
    """Capture the message of the notification whose key is ``idempotency_key`` (once: a second
    capture returns the first one's id). ``None`` when no notification has that key."""
    owner = conn.execute(
        sa.select(notifications.c.id, notifications.c.merchant_id).where(
            notifications.c.idempotency_key == idempotency_key
        )
    ).first()
    if owner is None:
        return None
    conn.execute(
        db.insert(outbox_messages)
        .values(notification_id=owner.id, merchant_id=owner.merchant_id, created_at=utcnow(), **message)
        .on_conflict_do_nothing(index_elements=["notification_id"])
    )
    row = conn.execute(
        sa.select(outbox_messages.c.id).where(outbox_messages.c.notification_id == owner.id)
    ).one()
    return int(row.id)


_CAPTURE = DialectStatement(
    lambda insert: (
        insert(outbox_messages)
        .on_conflict_do_nothing(index_elements=["notification_id"])
        .returning(outbox_messages.c.id)
    )
)


def outbox_capture(
    db: Database, conn: Connection, *, notification_id: int, merchant_id: int, **message: Any
) -> int:
    """Capture the message of notification ``notification_id`` (its row is known and locked by
    the caller): one statement, or two when a capture already exists (its id is returned)."""
    row = conn.execute(
        _CAPTURE(db),
        {"notification_id": notification_id, "merchant_id": merchant_id, "created_at": utcnow(), **message},
    ).first()
    if row is None:
        row = conn.execute(
            sa.select(outbox_messages.c.id).where(outbox_messages.c.notification_id == notification_id)
        ).one()
    return int(row.id)


#: ``provider_id`` of a notification captured in the outbox: this prefix and the outbox row's id.
OUTBOX_PROVIDER_PREFIX = "outbox-"
_MESSAGE_COLUMNS = ("channel", "to_address", "sender", "subject", "text", "html", "headers")


def _capture_and_record() -> sa.Update:
    """PostgreSQL: capture the message (``INSERT … ON CONFLICT DO NOTHING`` in a CTE) and update
    the notification with ``provider_id`` = prefix + the outbox row's id, in one statement. The
    capture's parameters are prefixed, so no name of theirs is taken for a notification column."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    captured = (
        pg_insert(outbox_messages)
        .values(
            notification_id=sa.bindparam("notification_id"),
            merchant_id=sa.bindparam("outbox_merchant_id"),
            created_at=sa.bindparam("outbox_created_at", type_=outbox_messages.c.created_at.type),
            **{c: sa.bindparam(f"outbox_{c}", type_=outbox_messages.c[c].type) for c in _MESSAGE_COLUMNS},
        )
        .on_conflict_do_nothing(index_elements=["notification_id"])
        .returning(outbox_messages.c.id)
        .cte("captured")
    )
    earlier = sa.select(outbox_messages.c.id).where(
        outbox_messages.c.notification_id == sa.bindparam("notification_id")
    )
    outbox_id = sa.func.coalesce(sa.select(captured.c.id).scalar_subquery(), earlier.scalar_subquery())
    return (
        notifications.update()
        .where(notifications.c.id == sa.bindparam("notification_id"))
        .values(provider_id=sa.literal(OUTBOX_PROVIDER_PREFIX) + sa.cast(outbox_id, sa.String))
        .add_cte(captured)
        .returning(notifications.c.provider_id)
    )


_CAPTURE_AND_RECORD = _capture_and_record()


def outbox_capture_and_update(
    db: Database,
    conn: Connection,
    *,
    notification_id: int,
    merchant_id: int,
    message: Mapping[str, Any],
    **values: Any,
) -> str:
    """:func:`outbox_capture` of ``message`` and :func:`update` of the notification with
    ``values`` and ``provider_id`` = :data:`OUTBOX_PROVIDER_PREFIX` + the capture's id; returns
    that provider id. The caller holds the notification's row. One statement on PostgreSQL,
    two on SQLite (no ``INSERT`` inside a ``WITH`` there)."""
    now = utcnow()
    if not db.is_sqlite:
        provider_id = conn.execute(
            _CAPTURE_AND_RECORD,
            {
                "updated_at": now,
                **values,
                "notification_id": notification_id,
                "outbox_merchant_id": merchant_id,
                "outbox_created_at": now,
                **{f"outbox_{c}": message[c] for c in _MESSAGE_COLUMNS},
            },
        ).scalar_one()
        if provider_id is not None:
            return str(provider_id)
        # the capture met a row committed after this statement's snapshot (it cannot be this
        # notification's own sender: the caller holds the row): look it up, as below
    outbox_id = outbox_capture(db, conn, notification_id=notification_id, merchant_id=merchant_id, **message)
    provider_id = f"{OUTBOX_PROVIDER_PREFIX}{outbox_id}"
    update(conn, notification_id, **values, provider_id=provider_id)
    return provider_id


#: Header of an outbox row whose content was removed, naming why: ``retention`` or ``erasure``
#: (``store/retention.py``).
REMOVED_HEADER = "X-Parcelhook-Removed"


def outbox_list(conn: Connection, *, merchant_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Newest first. A message whose content was removed (``store/retention.py``) has ``subject``,
    ``text`` and ``html`` null and ``removed`` naming why (``retention`` / ``erasure``)."""
    query = sa.select(outbox_messages, notifications.c.kind, notifications.c.status).join(
        notifications, notifications.c.id == outbox_messages.c.notification_id
    )
    if merchant_id is not None:
        query = query.where(outbox_messages.c.merchant_id == merchant_id)
    rows = conn.execute(query.order_by(outbox_messages.c.id.desc()).limit(limit))
    return [_outbox_view(r) for r in rows]


def _outbox_view(r: Any) -> dict[str, Any]:
    removed = (r.headers or {}).get(REMOVED_HEADER)
    return {
        "id": r.id,
        "notification_id": r.notification_id,
        "kind": r.kind,
        "status": r.status,
        "channel": r.channel,
        "to": mask(r.to_address) if removed else r.to_address,
        "from": r.sender,
        "subject": None if removed else r.subject,
        "text": None if removed else r.text,
        "html": None if removed else r.html,
        "headers": r.headers,
        "created_at": r.created_at.isoformat(),
        "removed": removed,
    }
