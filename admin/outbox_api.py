"""``GET /api/outbox``: notifications captured when no real channel is configured."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from admin.paging import page_args
from admin.services import services
from store import merchants as merchant_store
from store import notifications as notification_store

outbox_api = Blueprint("outbox_api", __name__)


@outbox_api.get("/api/outbox")
def outbox() -> Response:
    limit = page_args(request.args, default=50, maximum=500).limit
    s = services()
    slug = request.args.get("merchant") or None
    with s.database.read() as conn:
        merchant_id = merchant_store.require(conn, slug).id if slug else None
        messages = notification_store.outbox_list(conn, merchant_id=merchant_id, limit=limit)
    return jsonify({"messages": messages})
