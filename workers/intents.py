"""Planned notifications (``domain.policy.Intent``) become notification rows: who the
customer is for the policy, what the merchant has switched on, and the row each intent
writes (unique idempotency key; a repeat writes nothing). Used by event processing, order
registration (catch-up, :mod:`workers.orders`) and the sender's merchant alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from domain.policy import DEFAULT_NOTIFY, Intent, NotifySettings, Recipient
from domain.vocabulary import Audience, Channel, NotificationKind, NotificationStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store import orders as order_store
from store.database import Database
from store.merchants import Merchant
from store.notifications import NotificationRow
from store.orders import Order

#: Context flag of an order-level notification (the order's ``delivered``, ``workers/parcels.py``).
ORDER_SCOPE = "order_level"

#: Why a planned notification was not sent, as shown in the order's notification list.
SUPPRESSION_REASONS = {
    "kind_disabled": "kind disabled for this channel (merchant notify settings)",
    "no_contact": "no contact address for this channel",
    "opted_out": "customer did not opt in to this channel",
    "test_event": "test-mode event (merchant notify_test_events is off)",
}


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


_KEYS_TRIED = "parcelhook_intent_keys_tried"


def _keys_tried(conn: Connection) -> set[str]:
    """The idempotency keys inserted (or found stored) by this transaction so far."""
    transaction = conn.get_transaction()
    memo = conn.info.get(_KEYS_TRIED)
    if memo is None or memo[0] is not transaction:
        memo = conn.info[_KEYS_TRIED] = (transaction, set())
    return memo[1]


def store_intents(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    order: Order | None,
    shipment_id: int | None,
    intents: Sequence[Intent],
    context: Mapping[str, Any] | None = None,
) -> tuple[int, ...]:
    """One notification row per intent; returns the ids of new rows to send (``queued``)."""
    rows: list[dict[str, Any]] = []
    for intent in intents:
        status, error = NotificationStatus.QUEUED.value, None
        if intent.audience == Audience.MERCHANT:
            to = merchant.alert_email
            if not to:
                status, error = NotificationStatus.SUPPRESSED.value, "merchant has no alert_email"
        else:
            to = (
                (
                    order.customer.get("email")
                    if intent.channel == Channel.EMAIL
                    else order.customer.get("phone")
                )
                if order
                else None
            )
        if intent.suppressed:
            status = NotificationStatus.SUPPRESSED.value
            error = SUPPRESSION_REASONS.get(intent.suppressed, intent.suppressed)
        rows.append(
            notification_store.new_row(
                merchant_id=merchant.id,
                order_id=order.id if order else None,
                shipment_id=shipment_id,
                kind=intent.kind.value,
                channel=intent.channel.value,
                audience=intent.audience.value,
                key=intent.key,
                to_address=to,
                status=status,
                context={
                    **({"occurrence": intent.occurrence} if intent.occurrence else {}),
                    **({ORDER_SCOPE: True} if intent.order_level else {}),
                    **(context or {}),
                },
                error=error,
            )
        )
    # One statement for all of them. A key already stored (a repeat) writes nothing, and so does
    # a key repeated within ``rows`` (the first row of a key is the one written).
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["idempotency_key"], row)
    # A key this transaction already tried to insert (the catch-up after the live intents of the
    # same update, same keys) is stored or was there before: inserting it again writes nothing.
    tried = _keys_tried(conn)
    unique = [row for key, row in first.items() if key not in tried]
    tried.update(first)
    written = notification_store.create_many(db, conn, unique)
    return tuple(
        written[r["idempotency_key"]]
        for r in unique
        if r["status"] == NotificationStatus.QUEUED.value and r["idempotency_key"] in written
    )


def alert_failed(
    db: Database, conn: Connection, n: NotificationRow, *, at: datetime, detail: str | None = None
) -> tuple[int, ...]:
    """The merchant's ``notification_failed`` alert about customer notification ``n`` (already
    recorded ``failed``): once per notification, whoever notices first (the sender, its retries
    running out, a Twilio ``undelivered``/``failed`` callback) — the key ``<n.key>:failed`` is
    unique, so a repeat writes nothing. Returns the ids to send."""
    if n.audience != Audience.CUSTOMER:
        return ()  # an alert about a failed alert would loop
    merchant = merchant_store.get_by_id(conn, n.merchant_id)
    order = order_store.get_by_id(conn, n.order_id) if n.order_id else None
    masked = notification_store.mask(n.to_address)
    alert = {
        "kind": NotificationKind.NOTIFICATION_FAILED.value,
        "order_ref": order.ref if order else None,
        "detail": detail or f"The {n.kind} {n.channel} to {masked} could not be sent.",
        "error": f"{n.error_code or ''} {n.error or ''}".strip() or None,
        "channel": n.channel,
    }
    return store_merchant_alert(
        db, conn, merchant, order, n.shipment_id, key=f"{n.key}:failed", at=at, alert=alert
    )


def store_merchant_alert(
    db: Database,
    conn: Connection,
    merchant: Merchant,
    order: Order | None,
    shipment_id: int | None,
    *,
    key: str,
    at: datetime,
    alert: Mapping[str, Any],
) -> tuple[int, ...]:
    """The merchant's alert email of kind ``alert["kind"]`` (its template's ``alert``), under the
    unique ``key``: a repeat writes nothing. Returns the ids to send."""
    intent = Intent(
        kind=NotificationKind(alert["kind"]),
        audience=Audience.MERCHANT,
        channel=Channel.EMAIL,
        key=key,
        status_at=at,
        occurrence=None,
    )
    return store_intents(db, conn, merchant, order, shipment_id, [intent], {"alert": alert})
