"""What Twilio and customers tell us back: delivery receipts and opt-outs.

An ``undelivered``/``failed`` receipt raises the merchant's ``notification_failed`` alert, once
per notification (``workers.intents.alert_failed``); one whose error code means the recipient
opted out (``workers.opt_outs``) also records the opt-out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from dramatiq.middleware import CurrentMessage

from domain.vocabulary import Channel, NotificationStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store.contacts import comparable_phone
from store.database import Database, utcnow
from workers.intents import alert_failed
from workers.opt_outs import record_provider_opt_out

log = logging.getLogger("parcelhook.callbacks")

#: Twilio MessageStatus → ours. Intermediate states (queued, sending, accepted) change nothing.
TWILIO_STATUS = MappingProxyType(
    {
        "sent": NotificationStatus.SENT,
        "delivered": NotificationStatus.DELIVERED,
        "undelivered": NotificationStatus.FAILED,
        "failed": NotificationStatus.FAILED,
    }
)

#: Twilio's standard opt-out / opt-in keywords.
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP", "OPTIN"})


class UnknownMessage(LookupError):
    """A delivery receipt for a message whose provider id is not recorded (yet)."""


#: How long a receipt for an unknown message SID is retried. Twilio can call back before our
#: worker has recorded the SID it just got (milliseconds to seconds); a receipt still unknown
#: after this is for a message that is not ours to track (sent by another system on the same
#: number, or its row is gone): counted (``parcelhook_events_processed{actor="record_sms_status",
#: outcome="unknown_message"}``), logged at DEBUG and dropped — never dead-lettered, so it never
#: opens a dead-letter alert.
UNKNOWN_SID_GRACE = timedelta(seconds=45)  # the 6th retry comes ≥ 31 s after the first try


def _unknown_sid(message_sid: str) -> None:
    """Raise (the actor retries) while the receipt is young, else record and drop it.

    Called outside a worker (no current message) it raises: retrying is the caller's business."""
    message = CurrentMessage.get_current_message()
    if message is None:
        raise UnknownMessage(f"no notification has provider id {message_sid!r} (yet)")
    age = datetime.now(UTC) - datetime.fromtimestamp(message.message_timestamp / 1000, UTC)
    if age < UNKNOWN_SID_GRACE:
        # the actor's bounded retries apply the receipt once the row knows its provider id
        raise UnknownMessage(f"no notification has provider id {message_sid!r} (yet)")
    from workers.runtime import runtime

    runtime().telemetry.processed(actor="record_sms_status", outcome="unknown_message")
    log.debug("status callback for unknown message %s dropped after %.0f s", message_sid, age.total_seconds())


# A receipt never moves a notification backwards (e.g. a late "sent" after "delivered").
_RANK = {
    NotificationStatus.SENT.value: 1,
    NotificationStatus.DELIVERED.value: 2,
    NotificationStatus.FAILED.value: 2,
}


def sms_status(
    db: Database, merchant_slug: str, message_sid: str, status: str, error_code: str | None
) -> tuple[int, ...]:
    """Apply a Twilio status callback; returns the ids of merchant alerts to send (after commit)."""
    ours = TWILIO_STATUS.get(status.lower())
    if ours is None or not message_sid:
        return ()
    with db.write() as conn:
        merchant = merchant_store.require(conn, merchant_slug)
        n = notification_store.by_provider_id(conn, message_sid)
        if n is None:
            _unknown_sid(message_sid)
            return ()
        if n.merchant_id != merchant.id:
            log.warning("status for message %s of another merchant ignored", message_sid)
            return ()
        if _RANK.get(n.status, 0) > _RANK[ours.value]:
            return ()
        if n.status != ours.value:
            values: dict[str, object] = {"status": ours.value}
            if ours is NotificationStatus.FAILED:
                values.update(error=f"carrier reported {status}", error_code=error_code)
            notification_store.update(conn, n.id, **values)
        if ours is not NotificationStatus.FAILED:
            return ()
        record_provider_opt_out(db, conn, merchant.id, n.channel, n.to_address, error_code)
        failed = notification_store.get(conn, n.id)
        if failed is None:
            return ()
        detail = (
            f"The {n.kind} {n.channel} to {notification_store.mask(n.to_address)} "
            f"was not delivered (Twilio reported {status.lower()})."
        )
        # a repeated callback (or one racing it) meets the alert's unique key: one alert
        return alert_failed(db, conn, failed, at=utcnow(), detail=detail)


def sms_keyword(db: Database, merchant_slug: str, phone: str, keyword: str) -> None:
    first = keyword.split()[0] if keyword.split() else ""
    phone = comparable_phone(phone)  # E.164 (messages queued before the receiver normalized it)
    with db.write() as conn:
        merchant = merchant_store.require(conn, merchant_slug)
        if first in OPT_OUT:
            notification_store.opt_out(db, conn, merchant.id, Channel.SMS.value, phone, "sms_keyword")
        elif first in OPT_IN:
            notification_store.opt_in(conn, merchant.id, Channel.SMS.value, phone)


def email_opt_out(db: Database, merchant_slug: str, address: str) -> None:
    with db.write() as conn:
        merchant = merchant_store.require(conn, merchant_slug)
        notification_store.opt_out(db, conn, merchant.id, Channel.EMAIL.value, address, "unsubscribe_link")
