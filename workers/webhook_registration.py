"""Point a merchant's Shippo account at its parcelhook webhook URL, idempotently.

For each of ``transaction_created``, ``transaction_updated`` and ``track_updated``: list what
Shippo has, keep the registration whose URL is the merchant's current webhook URL, update one
that points at this merchant's receiver with an older URL (the token in its query string was
rotated), delete any further ones for the same event (duplicates deliver every update twice),
and create one when none is left. Run it twice: the second run changes nothing. Registrations
for other URLs (another system, another merchant) are never touched.
"""

from __future__ import annotations

from datetime import datetime

from config import Settings
from domain.vocabulary import EventName
from shippo_api.client import ShippoClient, Webhook, is_test_token
from store.database import Database
from store.merchants import Merchant
from workers.shippo_account import CallBudget, OnAlert, call

EVENTS: tuple[EventName, ...] = (
    EventName.TRANSACTION_CREATED,
    EventName.TRANSACTION_UPDATED,
    EventName.TRACK_UPDATED,
)


def _receiver(url: str) -> str:
    """A webhook URL without its query string (the token): which merchant's receiver it is."""
    return url.split("?", 1)[0]


def reconcile_registrations(client: ShippoClient, url: str, *, is_test: bool) -> list[Webhook]:
    ours = [w for w in client.webhooks() if _receiver(w.url) == _receiver(url)]
    kept: list[Webhook] = []
    for event in EVENTS:
        candidates = sorted(
            (w for w in ours if w.event == event),
            key=lambda w: (w.url != url or w.is_test != is_test, w.object_id),  # an exact one first
        )
        if not candidates:
            kept.append(client.create_webhook(event, url, is_test=is_test))
            continue
        first, *extra = candidates
        if first.url != url or first.is_test != is_test:
            first = client.update_webhook(first.object_id, event, url, is_test=is_test)
        for duplicate in extra:
            client.delete_webhook(duplicate.object_id)
        kept.append(first)
    return kept


def register(
    db: Database,
    settings: Settings,
    merchant: Merchant,
    *,
    now: datetime,
    on_alert: OnAlert,
    budget: CallBudget,
) -> list[Webhook]:
    url = merchant.webhook_url(settings.public_url)
    is_test = is_test_token(merchant.shippo_api_token or "")
    return call(
        db,
        settings,
        merchant,
        lambda client: reconcile_registrations(client, url, is_test=is_test),
        now=now,
        on_alert=on_alert,
        budget=budget,
    )
