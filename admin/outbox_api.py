"""``GET /api/outbox``: notifications captured when no real channel is configured."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from admin.app import services
from admin.validation import Invalid
from store import merchants as merchant_store
from store import notifications as notification_store

outbox_api = Blueprint("outbox_api", __name__)


@outbox_api.get("/api/outbox")
def outbox() -> Response:
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise Invalid({"limit": "must be an integer"}) from None
    if not 1 <= limit <= 500:
        raise Invalid({"limit": "must be between 1 and 500"})
    s = services()
    slug = request.args.get("merchant") or None
    with s.database.read() as conn:
        merchant_id = merchant_store.require(conn, slug).id if slug else None
        messages = notification_store.outbox_list(conn, merchant_id=merchant_id, limit=limit)
    return jsonify({"messages": messages})
