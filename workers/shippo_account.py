"""A merchant's Shippo account as parcelhook calls it (tracking lookups, webhook registration).

Every call goes through :func:`call`: no token → :class:`NoShippoToken`; Shippo refused this
token before → :class:`ShippoPaused` (no request is made); Shippo answers 401 now → calls are
paused for this token (``store.merchants.pause_shippo``, keyed by the token's digest, so saving a
new token resumes them) and the merchant gets one ``shippo_auth_failed`` alert per refused token
(a unique notification key), then the 401 (``ShippoUnauthorized``) goes on to the caller.
The token is decrypted only here, and appears in no log line and no error message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from config import Settings
from domain.vocabulary import NotificationKind
from shippo_api.client import ShippoClient
from shippo_api.errors import ShippoUnauthorized
from store import merchants as merchant_store
from store.database import Database
from store.merchants import Merchant
from workers.intents import store_merchant_alert

T = TypeVar("T")

#: Called with the id of each merchant alert to send (``send_notification.send``, or a list's append).
OnAlert = Callable[[int], None]


class ShippoNotReady(Exception):
    """The merchant cannot call Shippo now; the message says why (the admin API answers 409)."""


class NoShippoToken(ShippoNotReady):
    pass


class ShippoPaused(ShippoNotReady):
    pass


def client_for(merchant: Merchant, settings: Settings) -> ShippoClient:
    token = merchant.shippo_api_token
    if token is None:
        raise NoShippoToken(f"merchant {merchant.slug!r} has no shippo_api_token")
    return ShippoClient(token, base_url=settings.shippo_api_url)


def call(
    db: Database,
    settings: Settings,
    merchant: Merchant,
    action: Callable[[ShippoClient], T],
    *,
    now: datetime,
    on_alert: OnAlert,
) -> T:
    """``action(client)`` for ``merchant`` (loaded with the vault), unless calls are paused."""
    client = client_for(merchant, settings)
    if merchant.shippo_paused:
        raise ShippoPaused(
            f"Shippo refused merchant {merchant.slug!r}'s API token (401); calls are paused until "
            "a new shippo_api_token is saved"
        )
    try:
        return action(client)
    except ShippoUnauthorized as exc:
        for alert_id in refused(db, merchant, exc, now=now):
            on_alert(alert_id)
        raise


def refused(db: Database, merchant: Merchant, exc: ShippoUnauthorized, *, now: datetime) -> tuple[int, ...]:
    """Pause calls with this token and alert the merchant, in one transaction; once per token."""
    digest = merchant.shippo_token_digest
    if digest is None:
        return ()
    with db.write() as conn:
        if not merchant_store.pause_shippo(conn, merchant.id, digest, now):
            return ()  # already paused, or the token changed meanwhile
        alert = {
            "kind": NotificationKind.SHIPPO_AUTH_FAILED.value,
            "order_ref": None,
            "detail": "Shippo answered 401 Unauthorized to your Shippo API token.",
            "error": f"401 {exc}",
            "channel": None,
        }
        key = f"shippo_auth_failed:m{merchant.id}:{digest[:32]}"
        return store_merchant_alert(db, conn, merchant, None, None, key=key, at=now, alert=alert)
