"""Rows planted straight through the store, for tests of the store and the sender that need a
notification without running a webhook through the pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any

from sqlalchemy.engine import Connection

from domain.shipment import ShipmentState
from store import merchants as merchant_store
from store import notifications as notification_store
from store import orders as order_store
from store.database import Database, utcnow
from store.orders import Order
from store.schema import shipments

#: A planted shipment's identifiers: (transaction, carrier, tracking number).
Identifiers = tuple[str | None, str | None, str]


def notification(
    database: Database,
    conn: Connection,
    merchant_id: int,
    *,
    key: str,
    channel: str = "email",
    to_address: str = "jane@example.com",
    order_id: int | None = None,
    shipment_id: int | None = None,
    **fields: Any,
) -> int | None:
    """A customer ``shipped`` notification (``notifications.create``: None when ``key`` exists)."""
    return notification_store.create(
        database,
        conn,
        notification_store.new_row(
            merchant_id=merchant_id,
            order_id=order_id,
            shipment_id=shipment_id,
            kind="shipped",
            channel=channel,
            audience="customer",
            key=key,
            to_address=to_address,
            **fields,
        ),
    )


def acme_notification(database: Database, vault: Any, *, key: str) -> int:
    """Merchant ``acme`` and one queued email notification of it; returns the notification's id."""
    with database.write() as conn:
        merchant, _ = merchant_store.upsert(conn, "acme", vault=vault, name="Acme", profile={})
        created = notification(database, conn, merchant.id, key=key)
    assert created is not None
    return created


def order_notification(
    database: Database,
    conn: Connection,
    slug: str,
    ref: str,
    *,
    channel: str = "email",
    to_address: str = "jane@example.com",
) -> int | None:
    """Order ``ref`` of merchant ``slug`` (which must exist) registered for ``to_address`` on
    ``channel``, and a queued ``shipped`` notification of it (:func:`notification`'s answer)."""
    merchant = merchant_store.require(conn, slug)
    order, _ = order_store.register(
        database,
        conn,
        merchant.id,
        ref,
        customer={"email" if channel == "email" else "phone": to_address},
        notify_email=channel == "email",
        notify_sms=channel == "sms",
    )
    return notification(
        database,
        conn,
        merchant.id,
        order_id=order.id,
        channel=channel,
        key=f"{ref}:x:shipped:{channel}",
        to_address=to_address,
    )


def email_order(
    database: Database, conn: Connection, merchant_id: int, ref: str, customer: Mapping[str, Any]
) -> Order:
    """Order ``ref`` of the merchant registered for ``customer``, notified by email only."""
    order, _ = order_store.register(
        database, conn, merchant_id, ref, customer=dict(customer), notify_email=True, notify_sms=False
    )
    return order


def planted_shipments(
    conn: Connection,
    merchant_id: int,
    rows: Sequence[Identifiers],
    order_ids: Sequence[int | None] = (),
) -> dict[int, Identifiers]:
    """One shipment of the merchant (empty state) per row, the i-th in order ``order_ids[i]``
    (none past the end of ``order_ids``); returns each one's identifiers by its id."""
    stored: dict[int, Identifiers] = {}
    for (t, c, n), order_id in zip(rows, chain(order_ids, repeat(None)), strict=False):
        sid = conn.execute(
            shipments.insert()
            .values(
                merchant_id=merchant_id,
                order_id=order_id,
                transaction_id=t,
                carrier=c,
                tracking_number=n,
                state=ShipmentState.empty().to_dict(),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .returning(shipments.c.id)
        ).scalar_one()
        stored[sid] = (t, c, n)
    return stored
