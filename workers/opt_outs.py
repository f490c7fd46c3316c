"""Opt-outs a provider tells us by refusing a send.

Twilio answers 21610 when the recipient replied STOP at the carrier level: every later SMS to
that number would be refused the same way. It is recorded in the same opt-out store as a STOP
keyword (normalized E.164, ``store.notifications.opt_out``), so the next SMS to the number is
``suppressed`` before any provider call, and START re-enables it as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy.engine import Connection

from domain.vocabulary import Channel
from store import notifications as notification_store
from store.database import Database

#: (channel, provider error code) → the opt-out's ``source``.
PROVIDER_OPT_OUTS: Mapping[tuple[str, str], str] = MappingProxyType(
    {(Channel.SMS.value, "21610"): "carrier_stop"}
)


def record_provider_opt_out(
    db: Database, conn: Connection, merchant_id: int, channel: str, address: str | None, code: str | None
) -> bool:
    """Record an opt-out when the provider's error ``code`` says the recipient opted out;
    True if it did."""
    source = PROVIDER_OPT_OUTS.get((channel, str(code)))
    if source is None or not address:
        return False
    notification_store.opt_out(db, conn, merchant_id, channel, address, source)
    return True
