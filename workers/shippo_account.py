"""A merchant's Shippo account as parcelhook calls it (tracking lookups, webhook registration).

Every call goes through :func:`call`: no token → :class:`NoShippoToken`; Shippo refused this
token before → :class:`ShippoPaused` (no request is made); every HTTP request (retries
included) spends one unit of the merchant's :class:`CallBudget` (``PARCELHOOK_SHIPPO_RATE_PER_MIN``
per minute, shared in Redis by every process), and one over it → :class:`ShippoRateLimited`; Shippo answers 401 now → calls are
paused for this token (``store.merchants.pause_shippo``, keyed by the token's digest, so saving a
new token resumes them) and the merchant gets one ``shippo_auth_failed`` alert per refused token
(a unique notification key), then the 401 (``ShippoUnauthorized``) goes on to the caller.
The token is decrypted only here, and appears in no log line and no error message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import redis

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


class ShippoRateLimited(ShippoNotReady):
    """This minute's Shippo requests of the merchant are used up (the admin API answers 429)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CallBudget:
    """At most ``per_minute`` Shippo HTTP requests per merchant per clock minute, counted in Redis
    (``INCR`` per merchant and minute), so every process and every path -- lookups, reconciliation,
    webhook registration, the client's retries -- shares one budget."""

    def __init__(self, client: redis.Redis, per_minute: int, prefix: str = "parcelhook:shippo:calls") -> None:
        self.client = client
        self.per_minute = per_minute
        self.prefix = prefix

    def take(self, merchant_id: int, now: datetime) -> bool:
        key = f"{self.prefix}:{merchant_id}:{int(now.timestamp() // 60)}"
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        used, _ = pipe.execute()
        return int(used) <= self.per_minute

    def spend(self, merchant: Merchant, now: datetime) -> None:
        if not self.take(merchant.id, now):
            retry_after = 60 - int(now.timestamp()) % 60
            raise ShippoRateLimited(
                f"merchant {merchant.slug!r} has used its {self.per_minute} Shippo API requests of this "
                f"minute (PARCELHOOK_SHIPPO_RATE_PER_MIN); retry in {retry_after} s",
                retry_after,
            )


def client_for(merchant: Merchant, settings: Settings, budget: CallBudget, now: datetime) -> ShippoClient:
    token = merchant.shippo_api_token
    if token is None:
        raise NoShippoToken(f"merchant {merchant.slug!r} has no shippo_api_token")
    return ShippoClient(
        token, base_url=settings.shippo_api_url, before_request=lambda: budget.spend(merchant, now)
    )


def call(
    db: Database,
    settings: Settings,
    merchant: Merchant,
    action: Callable[[ShippoClient], T],
    *,
    now: datetime,
    on_alert: OnAlert,
    budget: CallBudget,
) -> T:
    """``action(client)`` for ``merchant`` (loaded with the vault), unless calls are paused; every
    request spends from ``budget``."""
    client = client_for(merchant, settings, budget, now)
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
