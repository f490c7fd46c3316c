"""What Twilio and customers tell us back: delivery receipts and opt-outs."""

from __future__ import annotations

import logging
from types import MappingProxyType

from domain.vocabulary import Channel, NotificationStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store.database import Database

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


# A receipt never moves a notification backwards (e.g. a late "sent" after "delivered").
_RANK = {NotificationStatus.SENT.value: 1, NotificationStatus.DELIVERED.value: 2, NotificationStatus.FAILED.value: 2}


def sms_status(db: Database, merchant_slug: str, message_sid: str, status: str, error_code: str | None) -> None:
    ours = TWILIO_STATUS.get(status.lower())
    if ours is None or not message_sid:
        return
    with db.write() as conn:
        merchant = merchant_store.require(conn, merchant_slug)
        n = notification_store.by_provider_id(conn, message_sid)
        if n is None:
            # Twilio can call back before our worker has recorded the SID it just got: raise, so
            # the actor's bounded retries apply the receipt once the row knows its provider id.
            raise UnknownMessage(f"no notification has provider id {message_sid!r} (yet)")
        if n.merchant_id != merchant.id:
            log.warning("status for message %s of another merchant ignored", message_sid)
            return
        if _RANK.get(n.status, 0) > _RANK[ours.value] or n.status == ours.value:
            return
        values: dict[str, object] = {"status": ours.value}
        if ours is NotificationStatus.FAILED:
            values.update(error=f"carrier reported {status}", error_code=error_code)
        notification_store.update(conn, n.id, **values)


def sms_keyword(db: Database, merchant_slug: str, phone: str, keyword: str) -> None:
    first = keyword.split()[0] if keyword.split() else ""
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
