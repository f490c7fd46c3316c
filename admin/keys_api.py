"""``/api/merchants/<m>/keys``: merchant-scoped API keys (docs/api.md, *Merchant keys*).

Admin token only. A key is shown once, in the answer that creates it; listings show its
``prefix`` (``phk_`` + 8 characters), never the key or its digest (``store/keys.py``).
Revoking answers ``200`` with the revoked key's listing entry; a key of another merchant is a
404, like a key that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.engine import Connection

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


@contextmanager
def _merchant(slug: str, *, write: bool = False) -> Iterator[tuple[Connection, int]]:
    """A transaction (read-only unless ``write``) and the id of merchant ``slug`` (404 if unknown)."""
    database = services().database
    with database.write() if write else database.read() as conn:
        yield conn, merchant_store.require(conn, slug).id


@keys_api.post("/api/merchants/<slug>/keys")
@scope(Scope.ADMIN)
def create_key(slug: str) -> tuple[Response, int]:
    label = _label()
    with _merchant(slug, write=True) as (conn, merchant_id):
        created, key = key_store.create(conn, merchant_id, label)
    return jsonify({"id": created.id, "key": key, **created.to_public()}), 201


@keys_api.get("/api/merchants/<slug>/keys")
@scope(Scope.ADMIN)
def list_keys(slug: str) -> Response:
    with _merchant(slug) as (conn, merchant_id):
        found = key_store.for_merchant(conn, merchant_id)
    return jsonify({"keys": [k.to_public() for k in found]})


# merchant_keys.id is an INTEGER (int4 on PostgreSQL): a larger id is no key, so no route (404)
@keys_api.delete("/api/merchants/<slug>/keys/<int(max=2147483647):key_id>")
@scope(Scope.ADMIN)
def revoke_key(slug: str, key_id: int) -> Response:
    with _merchant(slug, write=True) as (conn, merchant_id):
        revoked = key_store.revoke(conn, merchant_id, key_id)
    return jsonify(revoked.to_public())
