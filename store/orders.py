"""Orders: the platform's order (customer contact, opt-ins) and its aggregate status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from domain.payload import LabelUpdate, TrackUpdate
from domain.vocabulary import OrderStatus
from store.cursor import Cursor
from store.database import Database, Lockable, utcnow
from store.schema import orders, shipments
from store.shipments import (
    Attempts,
    ShipmentRow,
    attempt_params,
    attempts_of,
    first_of_statement,
    locate,
    shipment_of,
)

#: The cursor of :func:`page`: the id of the last order shown.
CURSOR = Cursor("id")


@dataclass(frozen=True)
class Order:
    id: int
    merchant_id: int
    ref: str
    status: str
    exception: str | None
    customer: Mapping[str, Any]
    notify_email: bool
    notify_sms: bool
    registered: bool
    created_at: datetime
    updated_at: datetime

    def to_public(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "status": self.status,
            "exception": self.exception,
            "registered": self.registered,
            "customer": dict(self.customer),
            "notify": {"email": self.notify_email, "sms": self.notify_sms},
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def order_of(row: Any, prefix: str = "") -> Order:
    """The :class:`Order` of a result row (or anything with the same attributes), its columns
    named ``prefix`` + the column name (``o_id``, … where a join labels them ``o_``)."""

    def col(name: str) -> Any:
        return getattr(row, prefix + name)

    return Order(
        id=col("id"),
        merchant_id=col("merchant_id"),
        ref=col("ref"),
        status=col("status"),
        exception=col("exception"),
        customer=dict(col("customer") or {}),
        notify_email=bool(col("notify_email")),
        notify_sms=bool(col("notify_sms")),
        registered=bool(col("registered")),
        created_at=col("created_at"),
        updated_at=col("updated_at"),
    )


_BY_ID = Lockable(sa.select(orders).where(orders.c.id == sa.bindparam("order_id")))
_BY_REF = Lockable(
    sa.select(orders).where(
        orders.c.merchant_id == sa.bindparam("merchant_id"), orders.c.ref == sa.bindparam("ref")
    )
)


def get(conn: Connection, merchant_id: int, ref: str) -> Order | None:
    row = conn.execute(
        sa.select(orders).where(orders.c.merchant_id == merchant_id, orders.c.ref == ref)
    ).first()
    return order_of(row) if row else None


def get_by_id(conn: Connection, order_id: int, *, lock: Database | None = None) -> Order:
    """``lock``: take the row lock (PostgreSQL) so the caller plans with the committed contact."""
    return order_of(conn.execute(_BY_ID(lock), {"order_id": order_id}).one())


#: The order and its shipments (one row per shipment, none joined: one row of NULLs), in one
#: statement: SQLite only (:func:`with_shipments`).
_SHIPMENT_COLUMNS = ("id", "merchant_id", "order_id", "order_ref", "state", "version")


def _joined(*where: Any) -> sa.Select[Any]:
    return (
        sa.select(orders, *(shipments.c[c].label(f"s_{c}") for c in _SHIPMENT_COLUMNS))
        .select_from(orders.outerjoin(shipments, shipments.c.order_id == orders.c.id))
        .where(*where)
        .order_by(shipments.c.id)
    )


_JOINED_BY_ID = _joined(orders.c.id == sa.bindparam("order_id"))
_JOINED_BY_REF = _joined(
    orders.c.merchant_id == sa.bindparam("merchant_id"), orders.c.ref == sa.bindparam("ref")
)


def _order_and_shipments(rows: Sequence[Any]) -> tuple[Order, list[ShipmentRow]] | None:
    if not rows:
        return None
    return order_of(rows[0]), _shipments_of(rows)


def _shipments_of(rows: Sequence[Any]) -> list[ShipmentRow]:
    """The shipments of joined rows (columns ``s_<name>``; a row of NULLs: none)."""
    return [
        shipment_of(SimpleNamespace(**{c: getattr(r, f"s_{c}") for c in _SHIPMENT_COLUMNS}))
        for r in rows
        if r.s_id is not None
    ]


def with_shipments(
    db: Database, conn: Connection, *, order_id: int | None = None, merchant_id: int = 0, ref: str = ""
) -> tuple[Order, list[ShipmentRow] | None]:
    """The order (by ``order_id``, else ``(merchant_id, ref)``, created unregistered as
    :func:`ensure` does when missing), row-locked for this transaction, and on SQLite its
    shipments (ordered by id) in the same statement (``BEGIN IMMEDIATE``: no writer can come in
    between). On PostgreSQL the shipments are ``None``: read them in a LATER statement, whose
    snapshot is taken after the lock was granted (``store.shipments.save``'s ``siblings_of``)."""
    if not db.is_sqlite:
        if order_id is not None:
            return get_by_id(conn, order_id, lock=db), None
        return ensure_locked(db, conn, merchant_id, ref), None
    if order_id is not None:
        found = _order_and_shipments(conn.execute(_JOINED_BY_ID, {"order_id": order_id}).all())
        if found is None:
            raise sa.exc.NoResultFound(f"order {order_id} not found")
        return found
    params = {"merchant_id": merchant_id, "ref": ref}
    found = _order_and_shipments(conn.execute(_JOINED_BY_REF, params).all())
    if found is None:
        ensure(db, conn, merchant_id, ref)
        found = _order_and_shipments(conn.execute(_JOINED_BY_REF, params).all())
    if found is None:
        raise RuntimeError(f"order {ref!r} vanished inside its own transaction")
    return found


#: SQLite: a track's shipment (the first match of its attempts), the shipment's order and the
#: order's shipments, in ONE statement (per attempts' shape; see :func:`locate_with_order`).
_LOCATED: dict[int, sa.Select[Any]] = {}


def _located_statement(attempts: Attempts) -> sa.Select[Any]:
    first = first_of_statement(attempts)
    found = _LOCATED.get(id(first))
    if found is not None:
        return found
    located = first.plain.subquery("located")
    sibling = shipments.alias("sibling")
    statement = (
        sa.select(
            located,
            *(c.label(f"o_{c.name}") for c in orders.c),
            *(sibling.c[c].label(f"s_{c}") for c in _SHIPMENT_COLUMNS),
        )
        .select_from(
            located.outerjoin(orders, orders.c.id == located.c.order_id).outerjoin(
                sibling, sibling.c.order_id == located.c.order_id
            )
        )
        .order_by(sibling.c.id)
    )
    return _LOCATED.setdefault(id(first), statement)


def locate_with_order(
    db: Database, conn: Connection, merchant_id: int, event: TrackUpdate | LabelUpdate
) -> tuple[ShipmentRow, tuple[Order, list[ShipmentRow]] | None]:
    """``store.shipments.locate``'s shipment and, on SQLite, for a track whose shipment already
    belongs to an order, :func:`with_shipments`'s answer for that order, read in the same
    statement (``BEGIN IMMEDIATE``: no writer can come in between); else ``None``."""
    if not db.is_sqlite or not isinstance(event, TrackUpdate):
        return locate(db, conn, merchant_id, event), None
    attempts, _ = attempts_of(merchant_id, event)
    rows = conn.execute(_located_statement(attempts), attempt_params(attempts)).all()
    if not rows:
        return locate(db, conn, merchant_id, event, searched=True), None
    shipment = shipment_of(rows[0])
    if shipment.order_id is None:
        return shipment, None
    order = order_of(rows[0], "o_")
    return shipment, (order, _shipments_of(rows))


def ensure(db: Database, conn: Connection, merchant_id: int, ref: str) -> Order:
    """The order row for ``ref``, created unregistered (no contact yet) when Shippo speaks first."""
    now = utcnow()
    conn.execute(
        db.insert(orders)
        .values(
            merchant_id=merchant_id,
            ref=ref,
            status=OrderStatus.AWAITING_SHIPMENT.value,
            customer={},
            notify_email=True,
            notify_sms=False,
            registered=False,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "ref"])
    )
    order = get(conn, merchant_id, ref)
    if order is None:
        raise RuntimeError(f"order {ref!r} vanished inside its own transaction")
    return order


def ensure_locked(db: Database, conn: Connection, merchant_id: int, ref: str) -> Order:
    """:func:`ensure`, row-locked (PostgreSQL) for this transaction: one statement when the order
    exists (the usual case: the platform registered it first), three when Shippo speaks first."""
    params = {"merchant_id": merchant_id, "ref": ref}
    row = conn.execute(_BY_REF(db), params).first()
    if row is None:
        ensure(db, conn, merchant_id, ref)
        row = conn.execute(_BY_REF(db), params).one()
    return order_of(row)


def register(
    db: Database,
    conn: Connection,
    merchant_id: int,
    ref: str,
    *,
    customer: Mapping[str, Any],
    notify_email: bool,
    notify_sms: bool,
) -> tuple[Order, bool]:
    """Create or update the platform's view of the order. Returns (order, created)."""
    existing = get(conn, merchant_id, ref)
    now = utcnow()
    values = {
        "customer": dict(customer),
        "notify_email": notify_email,
        "notify_sms": notify_sms,
        "registered": True,
        "updated_at": now,
    }
    if existing is None:
        ensure(db, conn, merchant_id, ref)
        created = True
    else:
        created = not existing.registered
    conn.execute(
        orders.update().where(orders.c.merchant_id == merchant_id, orders.c.ref == ref).values(**values)
    )
    order = get(conn, merchant_id, ref)
    if order is None:
        raise RuntimeError(f"order {ref!r} vanished inside its own transaction")
    return order, created


_SET_STATUS = orders.update().where(orders.c.id == sa.bindparam("order_id"))


def set_status(conn: Connection, order_id: int, status: str, exception: str | None) -> None:
    conn.execute(
        _SET_STATUS, {"order_id": order_id, "status": status, "exception": exception, "updated_at": utcnow()}
    )


def page(
    conn: Connection,
    merchant_id: int,
    *,
    status: str | None,
    exception: str | None,
    limit: int,
    before_id: int | None,
) -> tuple[list[Order], str | None]:
    """Newest first, keyset-paginated on id (served by ix_orders_merchant_status / _exception)."""
    query = sa.select(orders).where(orders.c.merchant_id == merchant_id)
    if status:
        query = query.where(orders.c.status == status)
    if exception:
        query = query.where(orders.c.exception == exception)
    if before_id is not None:
        query = query.where(orders.c.id < before_id)
    rows = conn.execute(query.order_by(orders.c.id.desc()).limit(limit + 1)).all()
    found = [order_of(r) for r in rows[:limit]]
    next_cursor = CURSOR.encode(found[-1].id) if len(rows) > limit else None
    return found, next_cursor
