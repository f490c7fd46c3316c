"""One shipment looked up at Shippo (``GET /tracks/<carrier>/<number>``) and fed through the
same processing as a webhook: the Track Shippo answers is exactly the ``data`` of the
``track_updated`` webhook it would send, so the body built here has the same content identity
(``domain.payload.webhook_identity``: the latest scan's ``object_id``) as that webhook. A status
already heard, by webhook or by an earlier lookup, is a duplicate ``deliveries`` row: no second
effect, no second message. Used by the admin API/CLI (manual refresh) and by reconciliation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config import Settings
from domain.payload import parse_event, parse_webhook, webhook_identity
from domain.vocabulary import ChangeKind, EventName, ProcessingOutcome
from store import shippo_polls
from store.database import Database
from store.merchants import Merchant
from workers.processing import process_event
from workers.shippo_account import CallBudget, OnAlert, call


@dataclass(frozen=True)
class Refreshed:
    outcome: ProcessingOutcome
    shipment_id: int | None
    notification_ids: tuple[int, ...] = ()
    changed: bool = False  # the status moved or an exception opened/cleared
    platform_events: int = 0


def track_updated_body(track: Mapping[str, Any]) -> str:
    """The ``track_updated`` webhook body Shippo sends for this Track."""
    return json.dumps(
        {"event": EventName.TRACK_UPDATED.value, "test": bool(track.get("test")), "data": dict(track)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def refresh(
    db: Database,
    settings: Settings,
    merchant: Merchant,
    carrier: str,
    tracking_number: str,
    *,
    now: datetime,
    on_alert: OnAlert,
    budget: CallBudget,
) -> Refreshed:
    """Raises the ``shippo_api.errors`` tree (Shippo failed), ``ShippoNotReady`` (no token,
    paused) or ``domain.payload.PayloadError`` (Shippo's Track cannot be processed)."""
    track = call(
        db,
        settings,
        merchant,
        lambda c: c.track(carrier, tracking_number),
        now=now,
        on_alert=on_alert,
        budget=budget,
    )
    body = track_updated_body(track)
    webhook = parse_webhook(body)
    parse_event(webhook)  # field-level checks, as the receiver does before it accepts a webhook
    outcome = process_event(
        db,
        merchant.slug,
        webhook_identity(webhook),
        now,
        body,
        now,
        platform_events=settings.platform_events_url is not None,
    )
    shipment_id = outcome.shipment_id
    if shipment_id is None:
        with db.read() as conn:
            shipment_id = shippo_polls.find_id(conn, merchant.id, carrier, tracking_number)
    return Refreshed(
        outcome=outcome.status,
        shipment_id=shipment_id,
        notification_ids=outcome.notification_ids,
        changed=any(c.kind is not ChangeKind.HISTORY_ADDED for c in outcome.changes),
        platform_events=outcome.platform_events,
    )
