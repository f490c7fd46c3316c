"""The merchant page: ``GET /m/<slug>`` (one server-rendered page for one merchant), its sign-in
and sign-out, and the one JSON endpoint it needs beyond the merchant's own API
(``GET /api/merchants/<slug>/overview``: recent orders with their shipments and exceptions, and
the notifications sent).

Sign-in is the dashboard's (``admin/dashboard.py``): the browser cannot send a bearer token on a
page load, so ``POST /m/<slug>/login`` takes a key of that merchant (or the admin token, which
opens every merchant's page) once and sets the signed session cookie (:mod:`admin.auth`; a key's
session ends when the key is revoked). The page (``admin/pages/merchant.html`` +
``admin/static/merchant.js``) shares the dashboard's styles and its template editor
(``admin/static/template_editor.js``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, session
from werkzeug.wrappers import Response as BaseResponse

from admin import auth
from admin.orders_api import shipment_view
from admin.paging import page_args
from admin.scopes import Scope, scope
from admin.services import services
from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind
from store import merchants as merchant_store
from store import notifications as notification_store
from store import orders as order_store
from store import shipments as shipment_store

merchant_page = Blueprint("merchant_page", __name__, template_folder="pages")

WRONG = "That is not a key of this merchant (or it was revoked). Try again."


@merchant_page.get("/m/<slug>/login")
@scope(Scope.OPEN)
def login_form(slug: str) -> str:
    return render_template("merchant_login.html", slug=slug, error=None)


@merchant_page.post("/m/<slug>/login")
@scope(Scope.OPEN)
def login(slug: str) -> BaseResponse | tuple[str, int]:
    token = services().settings.admin_token or ""
    given = request.form.get("key", "")
    if not given or not auth.sign_in_merchant(token, slug, given):
        return render_template("merchant_login.html", slug=slug, error=WRONG), 401
    return redirect(f"/m/{slug}")


@merchant_page.post("/m/<slug>/logout")
@scope(Scope.MERCHANT)
def logout(slug: str) -> Response:
    session.clear()
    return jsonify({"signed_out": True})


@merchant_page.get("/m/<slug>")
@scope(Scope.MERCHANT)
def page(slug: str) -> str:
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
    return render_template(
        "merchant.html",
        csrf=auth.csrf_token(),
        merchant=merchant,
        kinds=[k.value for k in NotificationKind],
        email_only=sorted(k.value for k in MERCHANT_ALERTS),
        channels=[c.value for c in Channel],
    )


@merchant_page.get("/api/merchants/<slug>/overview")
@scope(Scope.MERCHANT)
def overview(slug: str) -> Response:
    """``?limit=1…100 (20)`` recent orders, each with its shipments, and the last 50 notifications."""
    limit = page_args(request.args, default=20, maximum=100).limit
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
        found, _ = order_store.page(
            conn, merchant.id, status=None, exception=None, limit=limit, before_id=None
        )
        orders: list[dict[str, Any]] = [
            {
                **order.to_public(),
                "shipments": [
                    shipment_view(conn, merchant, r) for r in shipment_store.for_order(conn, order.id)
                ],
            }
            for order in found
        ]
        sent = notification_store.recent(conn, merchant_id=merchant.id, limit=50)
    return jsonify(
        {
            "merchant": {"slug": merchant.slug, "name": merchant.name},
            "orders": orders,
            "notifications": [notification_store.to_public(n) for n in sent],
        }
    )
