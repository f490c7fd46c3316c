"""``/api/merchants/<m>/keys``: merchant-scoped API keys (docs/api.md, *Merchant keys*).

Admin token only. A key is shown once, in the answer that creates it; listings show its
``prefix`` (``phk_`` + 8 characters), never the key or its digest (``store/keys.py``).
Revoking answers ``200`` with the revoked key's listing entry; a key of another merchant is a
404, like a key that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from admin.scopes import Scope, scope
from admin.services import services
from admin.validation import optional, text, validate
from store import keys as key_store
from store import merchants as merchant_store

keys_api = Blueprint("keys_api", __name__)

KEY_FIELDS = {"label": optional(text(key_store.MAX_LABEL))}


def _label() -> str | None:
    """The optional body ``{"label"}``; no body at all is fine."""
    if not request.get_data():
        return None
    body: dict[str, Any] = validate(request.get_json(silent=True), KEY_FIELDS)
    label = body.get("label")
    return label if isinstance(label, str) else None


@keys_api.post("/api/merchants/<slug>/keys")
@scope(Scope.ADMIN)
def create_key(slug: str) -> tuple[Response, int]:
    label = _label()
    s = services()
    with s.database.write() as conn:
        merchant = merchant_store.require(conn, slug)
        created, key = key_store.create(conn, merchant.id, label)
    return jsonify({"id": created.id, "key": key, **created.to_public()}), 201


@keys_api.get("/api/merchants/<slug>/keys")
@scope(Scope.ADMIN)
def list_keys(slug: str) -> Response:
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
        found = key_store.for_merchant(conn, merchant.id)
    return jsonify({"keys": [k.to_public() for k in found]})


@keys_api.delete("/api/merchants/<slug>/keys/<int:key_id>")
@scope(Scope.ADMIN)
def revoke_key(slug: str, key_id: int) -> Response:
    s = services()
    with s.database.write() as conn:
        merchant = merchant_store.require(conn, slug)
        revoked = key_store.revoke(conn, merchant.id, key_id)
    return jsonify(revoked.to_public())
