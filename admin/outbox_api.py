"""``GET /api/outbox``: notifications captured when no real channel is configured."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from admin.auth import merchant_filter
from admin.paging import page_args
from admin.scopes import Scope, scope
from admin.services import services
from config import Settings
from store import merchants as merchant_store
from store import notifications as notification_store

outbox_api = Blueprint("outbox_api", __name__)


@outbox_api.get("/api/outbox")
@scope(Scope.MERCHANT_FILTERED)
def outbox() -> Response:
    limit = page_args(request.args, default=50, maximum=500).limit
    s = services()
    slug = merchant_filter()  # a merchant key sees its own merchant only
    with s.database.read() as conn:
        merchant_id = merchant_store.require(conn, slug).id if slug else None
        messages = notification_store.outbox_list(conn, merchant_id=merchant_id, limit=limit)
    return jsonify({"messages": [with_removal_note(m, s.settings) for m in messages]})


def with_removal_note(message: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``removed``, when the content is gone, as words: ``removed after 90 days`` (retention,
    ``PARCELHOOK_RETAIN_MESSAGES_DAYS``) or ``erased on request``."""
    reason = message.get("removed")
    if reason == "retention":
        message["removed"] = f"removed after {settings.retain_messages_days} days"
    elif reason == "erasure":
        message["removed"] = "erased on request"
    return message
