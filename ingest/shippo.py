"""``POST /webhooks/shippo/<slug>``: verify → read → parse → enqueue → answer (docs/api.md, Receiver).

One fixed pipeline. Every step either passes or raises a ``Rejection`` that carries its
status code; every delivery, accepted or not, is counted and logged for ops.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from domain.payload import PayloadError, check_event, is_acted_on, is_test, parse_webhook, webhook_identity
from domain.vocabulary import DeliveryOutcome
from ingest import signature
from ingest.errors import (
    BadPayload,
    BadToken,
    Rejection,
    TooLarge,
    UnsupportedMediaType,
)
from ingest.queue import Writes
from ingest.services import services
from store.database import utcnow
from store.merchants import Merchant

shippo = Blueprint("shippo", __name__)

JSON_TYPES = ("application/json",)


@shippo.post("/webhooks/shippo/<slug>")
def receive(slug: str) -> Response:
    s = services()
    event_name = "unknown"
    test = False
    try:
        merchant = s.merchants.require(slug)
        _check_token(merchant)
        _check_content_type()
        raw = _read_body(s.settings.max_body_bytes)
        if merchant.hmac_secrets:
            signature.verify(
                request.headers.get(signature.HEADER),
                raw,
                merchant.hmac_secrets,
                now=time.time(),
                tolerance_s=s.settings.signature_tolerance_s,
            )
        try:
            webhook = parse_webhook(raw)
            # field-level checks too (identifiers, timestamps): a 400 now, not a dead letter later;
            # exactly parse_event's refusals, without building what the worker builds from the body
            check_event(webhook)
        except PayloadError as exc:
            raise BadPayload(str(exc)) from None
        event_name = webhook.event
        test = is_test(webhook)
        event_id = webhook_identity(webhook)
        if_new = DeliveryOutcome.QUEUED if is_acted_on(webhook) else DeliveryOutcome.IGNORED
        # One round trip: this delivery's telemetry rides in the enqueue script, written only if
        # the event is new (ingest/queue.py); a duplicate, a 503 or a suspended telemetry records below.
        batch = (
            s.telemetry.take_webhook(
                merchant=slug,
                event=event_name,
                outcome=str(if_new),
                status_code=200,
                reason=None,
                latency_s=time.perf_counter() - g.started,
                at=g.received_at,
                test=test,
            )
            if s.queue.one_round_trip
            else None
        )
        writes = None
        if batch is not None:
            writes = Writes()
            batch.fill(writes)
        try:
            queued = s.queue.submit(
                merchant_id=merchant.id,
                merchant_slug=merchant.slug,
                event_id=event_id,
                received_at=g.received_at.isoformat(),
                body=raw.decode("utf-8"),
                if_new=writes,
            )
        except Rejection as exc:
            if batch is not None:
                s.telemetry.settle(batch, written=False, error=exc)
            raise
        if batch is not None:
            s.telemetry.settle(batch, written=queued)
        outcome = if_new if queued else DeliveryOutcome.DUPLICATE
        if batch is None or not queued:
            _record(s, slug, event_name, outcome, 200, None, test=test)
        return jsonify({"status": str(outcome), "event_id": event_id})
    except Rejection as exc:
        _record(s, slug, event_name, exc.outcome, exc.status_code, exc.message, test=test)
        raise


def _check_token(merchant: Merchant) -> None:
    token = request.args.get("token")
    if not token:
        raise BadToken("missing ?token= query parameter")
    if not merchant.accepts_token(token, utcnow()):
        raise BadToken("the token does not match this merchant's webhook token")


def _check_content_type() -> None:
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {mimetype or 'none'!r}")


def _read_body(limit: int) -> bytes:
    """Refuse by Content-Length before reading; otherwise read at most limit + 1 bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"body exceeds the {limit}-byte limit")
    if not raw:
        raise BadPayload("body is empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    return raw


def _record(
    s: Any, slug: str, event: str, outcome: str, status_code: int, reason: str | None, *, test: bool = False
) -> None:
    s.telemetry.webhook(
        merchant=slug,
        event=event,
        outcome=str(outcome),
        status_code=status_code,
        reason=reason,
        latency_s=time.perf_counter() - g.started,
        at=g.received_at,
        test=test,
    )
