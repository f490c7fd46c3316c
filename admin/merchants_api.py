"""``/api/merchants``: create, update, read and rotate merchants (docs/api.md, Merchants)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from admin.scopes import Scope, scope
from admin.services import json_body, services
from admin.validation import SLUG, SLUG_RULE, Invalid, validate_merchant
from store import merchants as merchant_store

merchants_api = Blueprint("merchants_api", __name__)


@merchants_api.get("/api/merchants")
@scope(Scope.ADMIN)
def list_merchants() -> Response:
    s = services()
    with s.database.read() as conn:
        found = merchant_store.list_all(conn, s.settings.vault)
    return jsonify({"merchants": [m.to_public(s.settings.public_url) for m in found]})


@merchants_api.get("/api/merchants/<slug>")
@scope(Scope.MERCHANT)
def get_merchant(slug: str) -> Response:
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug, s.settings.vault)
    return jsonify(merchant.to_public(s.settings.public_url))


@merchants_api.put("/api/merchants/<slug>")
@scope(Scope.MERCHANT, admin_fields=("hmac_secrets", "shippo_api_token"))
def put_merchant(slug: str) -> tuple[Response, int]:
    if not SLUG.fullmatch(slug):
        raise Invalid({"slug": SLUG_RULE})
    body = validate_merchant(json_body())
    s = services()
    secrets = body.pop("hmac_secrets", None)
    shippo_token = body.pop("shippo_api_token", merchant_store.KEEP)
    name = body.pop("name", None)
    with s.database.write() as conn:
        if merchant_store.get(conn, slug) is None and not name:
            raise Invalid({"name": "is required to create a merchant"})
        merchant, created = merchant_store.upsert(
            conn,
            slug,
            vault=s.settings.vault,
            name=name,
            profile=body,
            hmac_secrets=secrets,
            shippo_api_token=shippo_token,
        )
    return jsonify(merchant.to_public(s.settings.public_url)), 201 if created else 200


@merchants_api.post("/api/merchants/<slug>/rotate-token")
@scope(Scope.ADMIN)
def rotate(slug: str) -> Response:
    s = services()
    with s.database.write() as conn:
        merchant = merchant_store.rotate_token(conn, slug, vault=s.settings.vault)
    return jsonify(merchant.to_public(s.settings.public_url))
