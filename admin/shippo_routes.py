"""Shippo, asked by parcelhook (docs/api.md, *Shippo*):

- ``POST /api/merchants/<slug>/shipments/refresh`` ``{"carrier", "tracking_number"}``: look the
  shipment up at Shippo and process the Track like a ``track_updated`` webhook
  (``workers/tracking_refresh.py``); answers ``{"shipment": …}`` as the orders API shows it.
- ``POST /api/merchants/<slug>/shippo/webhooks``: register the merchant's webhook URL for the
  three events, idempotently (``workers/webhook_registration.py``).

| failure | status | error |
|---|---|---|
| no ``shippo_api_token``, or calls paused after a 401 | 409 | ``conflict`` |
| Shippo failed (its status named), or its Track cannot be processed | 502 | ``shippo_failed`` |
| a bad body | 422 | ``invalid`` (+ ``fields``) |
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from admin.scopes import Scope, scope
from admin.services import Services, json_body, services
from admin.validation import validate
from domain.fields import IDENTIFIER_LIMITS
from domain.payload import PayloadError
from ingest.errors import error_response
from shippo_api.errors import ShippoError
from store import merchants as merchant_store
from store import shipments as shipment_store
from store.database import utcnow
from store.errors import Conflict, NotFound
from store.merchants import Merchant
from workers.shippo_account import CallBudget, ShippoNotReady, ShippoRateLimited
from workers.tracking_refresh import Refreshed, refresh
from workers.webhook_registration import register

shippo_routes = Blueprint("shippo_routes", __name__)


def _identifier(kind: str) -> Any:
    limit = IDENTIFIER_LIMITS[kind]

    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v.strip():
            return "is required (a non-empty string)"
        if v != v.strip():
            return "must not start or end with whitespace"
        return None if len(v) <= limit else f"must be at most {limit} characters"

    return check


REFRESH_FIELDS = {"carrier": _identifier("carrier"), "tracking_number": _identifier("tracking_number")}


@shippo_routes.errorhandler(ShippoError)
def _shippo_failed(exc: ShippoError) -> Response:
    return error_response(502, "shippo_failed", exc.described)


@shippo_routes.errorhandler(ShippoNotReady)
def _not_ready(exc: ShippoNotReady) -> Response:
    return error_response(409, "conflict", str(exc))


@shippo_routes.errorhandler(ShippoRateLimited)
def _rate_limited(exc: ShippoRateLimited) -> Response:
    return error_response(429, "rate_limited", str(exc), headers={"Retry-After": str(exc.retry_after_s)})


def _budget(s: Services) -> CallBudget:
    return CallBudget(s.redis, s.settings.shippo_rate_per_min)


@shippo_routes.post("/api/merchants/<slug>/shipments/refresh")
@scope(Scope.MERCHANT)
def refresh_shipment(slug: str) -> Response:
    body = validate(json_body(), REFRESH_FIELDS, required=("carrier", "tracking_number"))
    s = services()
    return jsonify({"shipment": refresh_and_view(s, slug, body["carrier"], body["tracking_number"])})


def refresh_and_view(s: Services, slug: str, carrier: str, tracking_number: str) -> dict[str, Any]:
    """The refresh, its sends enqueued, and the shipment's view (the CLI and the dashboard too)."""
    from admin.orders_api import shipment_view

    merchant = _merchant(s, slug)
    try:
        result = refresh(
            s.database,
            s.settings,
            merchant,
            carrier,
            tracking_number,
            now=utcnow(),
            on_alert=_send,
            budget=_budget(s),
        )
    except PayloadError as exc:
        raise ShippoError(f"its Track cannot be processed: {exc}", status=200) from None
    _enqueue(result)
    if result.shipment_id is None:
        raise NotFound(f"Shippo has no tracking status for {carrier} {tracking_number} yet")
    with s.database.read() as conn:
        return shipment_view(conn, merchant, shipment_store.get(conn, result.shipment_id))


@shippo_routes.post("/api/merchants/<slug>/shippo/webhooks")
@scope(Scope.MERCHANT)
def register_webhooks(slug: str) -> Response:
    return jsonify({"webhooks": register_and_list(services(), slug)})


def register_and_list(s: Services, slug: str) -> list[dict[str, str]]:
    merchant = _merchant(s, slug)
    webhooks = register(s.database, s.settings, merchant, now=utcnow(), on_alert=_send, budget=_budget(s))
    return [w.to_public() for w in webhooks]


def _merchant(s: Services, slug: str) -> Merchant:
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug, s.settings.vault)
    if not merchant.shippo_token_set:
        raise Conflict(f"merchant {slug!r} has no shippo_api_token (PUT /api/merchants/{slug} to set it)")
    return merchant


def _send(notification_id: int) -> None:
    from workers.actors import send_notification

    send_notification.send(notification_id)


def _enqueue(result: Refreshed) -> None:
    """After the commit, as the ``process_event`` actor does."""
    from workers.actors import publish_platform_events

    for notification_id in result.notification_ids:
        _send(notification_id)
    if result.platform_events:
        publish_platform_events.send()
