"""The embedded default channel: with no SMTP or Twilio configured, messages are captured in
the database and listed at ``GET /api/outbox``.

It is a channel like any other (:class:`notifiers.channel.ChannelAdapter`, the way
django-anymail's test backend is an email backend): ``send`` takes the message and nothing
else. The captured row belongs to the notification whose idempotency key the message carries.
It lives in ``workers/`` rather than ``notifiers/`` because it writes through ``store/``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from notifiers.channel import OutgoingMessage, PermanentChannelError, SendResult
from store import notifications as notification_store
from store.database import Database
from store.notifications import OUTBOX_PROVIDER_PREFIX


class OutboxChannel:
    #: The message is written by the database the notification lives in, so a sender may write it
    #: in the notification's own claim transaction (:meth:`capture_sent`): claim, render, capture and
    #: ``sent`` commit together, and there is no provider call to lose an answer in.
    transactional = True

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    def send(self, msg: OutgoingMessage) -> SendResult:
        with self.db.write() as conn:
            outbox_id = notification_store.outbox_put(
                self.db, conn, idempotency_key=msg.idempotency_key, **_columns(msg)
            )
        if outbox_id is None:
            # outbox rows are listed per notification and merchant; a message of no notification
            # (an ops alert) has nowhere to go, so the outbox refuses it like a provider would
            raise PermanentChannelError(
                f"the outbox captures notifications only; no notification has key {msg.idempotency_key!r}"
            )
        return SendResult(provider_id=f"{OUTBOX_PROVIDER_PREFIX}{outbox_id}")

    def capture_sent(
        self, conn: Connection, msg: OutgoingMessage, *, notification_id: int, merchant_id: int, **values: Any
    ) -> SendResult:
        """:meth:`send` inside the caller's transaction, for the notification it holds locked, and
        that notification updated with ``values`` and the capture's provider id (its ``sent``):
        one statement on PostgreSQL, two on SQLite."""
        provider_id = notification_store.outbox_capture_and_update(
            self.db,
            conn,
            notification_id=notification_id,
            merchant_id=merchant_id,
            message=_columns(msg),
            **values,
        )
        return SendResult(provider_id=provider_id)


def _columns(msg: OutgoingMessage) -> dict[str, Any]:
    headers = {"X-Idempotency-Key": msg.idempotency_key}
    if msg.list_unsubscribe:
        headers["List-Unsubscribe"] = f"<{msg.list_unsubscribe}>"
    if msg.reply_to:
        headers["Reply-To"] = msg.reply_to
    if msg.test:
        headers["X-Parcelhook-Test"] = "1"
    return {
        "channel": msg.channel,
        "to_address": msg.to,
        "sender": msg.sender,
        "subject": msg.subject,
        "text": msg.text,
        "html": msg.html,
        "headers": headers,
    }
