"""Planned notifications (``domain.policy.Intent``) become notification rows: who the
customer is for the policy, what the merchant has switched on, and the row each intent
writes (unique idempotency key; a repeat writes nothing). Used by event processing, order
registration (catch-up, :mod:`workers.orders`) and the sender's merchant alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from domain.policy import DEFAULT_NOTIFY, Intent, NotifySettings, Recipient
from domain.vocabulary import Audience, Channel, NotificationKind, NotificationStatus
from store import notifications as notification_store
from store.database import Database
from store.merchants import Merchant
from store.orders import Order

#: Why a planned notification was not sent, as shown in the order's notification list.
SUPPRESSION_REASONS = {
    "kind_disabled": "kind disabled for this channel (merchant notify settings)",
    "no_contact": "no contact address for this channel",
    "opted_out": "customer did not opt in to this channel",
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
