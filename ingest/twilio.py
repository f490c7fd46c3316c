"""Twilio callbacks on `web`: message status and inbound STOP/START/HELP.

Both are verified with the twilio library's ``RequestValidator`` against the URL Twilio
called (``PARCELHOOK_PUBLIC_URL`` + path + query, since a proxy may sit in front of us) and
then handed to a worker, like Shippo webhooks: the web process only verifies and enqueues.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from domain.vocabulary import DeliveryOutcome
from ingest.errors import Rejection
from ingest.queue import hand_off
from ingest.services import services
from store.contacts import comparable_phone
from workers.actors import record_sms_keyword, record_sms_status

twilio_callbacks = Blueprint("twilio_callbacks", __name__)


class TwilioSignatureRejected(Rejection):
    """A Twilio callback we cannot verify: 403, as Twilio's own webhook security docs expect
    (the Shippo receiver's token/HMAC failures stay 401: docs/api.md, Receiver)."""

    status_code = 403
    outcome = DeliveryOutcome.BAD_SIGNATURE


HELP_TEXT = "{name}: order and delivery updates. Reply STOP to unsubscribe, START to resubscribe."


def _verify(slug: str) -> Any:
    s = services()
    merchant = s.merchants.require(slug)
    token = s.settings.twilio_auth_token
    if not token:
        raise TwilioSignatureRejected("Twilio is not configured here (PARCELHOOK_TWILIO_AUTH_TOKEN unset)")
    url = s.settings.public_url.rstrip("/") + request.full_path.rstrip("?")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        raise TwilioSignatureRejected("missing X-Twilio-Signature header")
    if not RequestValidator(token).validate(url, request.form.to_dict(), signature):
        raise TwilioSignatureRejected("X-Twilio-Signature does not match this request")
    return merchant


def _twiml(message: str | None = None) -> Response:
    from xml.sax.saxutils import escape

    body = f"<Message>{escape(message)}</Message>" if message else ""
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', mimetype="text/xml")


@twilio_callbacks.post("/webhooks/twilio/<slug>/status")
def status(slug: str) -> Response:
    merchant = _verify(slug)
    form = request.form
    hand_off(
        record_sms_status,
        merchant.slug,
        form.get("MessageSid", ""),
        form.get("MessageStatus", ""),
        form.get("ErrorCode") or None,
    )
    return Response(status=204)


@twilio_callbacks.post("/webhooks/twilio/<slug>/inbound")
def inbound(slug: str) -> Response:
    merchant = _verify(slug)
    sender = comparable_phone(request.form.get("From", ""))  # E.164, as customers' phones are stored
    keyword = request.form.get("Body", "").strip().upper()
    hand_off(record_sms_keyword, merchant.slug, sender, keyword)
    if keyword in ("HELP", "INFO"):
        return _twiml(HELP_TEXT.format(name=merchant.name))
    return _twiml()
