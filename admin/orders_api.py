"""``/api/merchants/<m>/orders``: register orders, read their shipments, history and messages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter

from admin.paging import page_args
from admin.scopes import Scope, scope
from admin.services import json_body, services
from admin.validation import Invalid, validate_order
from domain.order import MAX_ORDER_REF, order_ref_problem
from domain.vocabulary import ExceptionClass, OrderStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store import orders as order_store
from store import shipments as shipment_store
from store.errors import NotFound
from store.merchants import Merchant
from store.orders import Order
from store.shipments import ShipmentRow

orders_api = Blueprint("orders_api", __name__)


class RefConverter(PathConverter):
    """``<path:…>`` that also takes line breaks: werkzeug's ``.`` would not, so ``1001%0A``
    answered a bare 404 instead of the 422 that names the problem (:func:`_check_ref`)."""

    regex = "[^/](?s:.)*?"


@orders_api.record_once
def _register_ref_converter(state: BlueprintSetupState) -> None:
    """Before the routes below are bound (a blueprint's deferred functions run in order)."""
    state.app.url_map.converters.setdefault("ref", RefConverter)


MAX_REF = MAX_ORDER_REF


def _check_ref(ref: str) -> None:
    """The same rule as refs extracted from Shippo metadata (``domain.order.order_ref_problem``):
    1..200 characters, not blank, no control characters, NUL or lone surrogates."""
    if (problem := order_ref_problem(ref)) is not None:
        raise Invalid({"order_ref": problem})


@orders_api.put("/api/merchants/<slug>/orders/<ref:ref>")
@scope(Scope.MERCHANT)
def put_order(slug: str, ref: str) -> tuple[Response, int]:
    _check_ref(ref)
    customer, notify = validate_order(json_body())
    s = services()
    from workers.orders import catch_up, refresh_order_status

    with s.database.write() as conn:
        merchant = merchant_store.require(conn, slug)
        if (existing := order_store.get(conn, merchant.id, ref)) is not None:
            # Lock order everywhere is shipment → order (workers/orders.py): take the shipments'
            # row locks before register() updates the order row, or a worker holding a shipment and
            # waiting for this order would deadlock with us on PostgreSQL.
            shipment_store.for_order(conn, existing.id, lock=s.database)
        order, created = order_store.register(
            s.database,
            conn,
            merchant.id,
            ref,
            customer=customer,
            notify_email=notify["email"],
            notify_sms=notify["sms"],
        )
        refresh_order_status(s.database, conn, order.id)
        to_send = catch_up(s.database, conn, merchant, order)
        body = _order_view(conn, order_store.get_by_id(conn, order.id), s.settings)
    if to_send:
        from workers.actors import send_notification

        for notification_id in to_send:
            send_notification.send(notification_id)
    return jsonify(body), 201 if created else 200


@orders_api.get("/api/merchants/<slug>/orders/<ref:ref>")
@scope(Scope.MERCHANT)
def get_order(slug: str, ref: str) -> Response:
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
        order = order_store.get(conn, merchant.id, ref)
        if order is None:
            raise NotFound(f"no order {ref!r} for merchant {slug!r}")
        return jsonify(_order_view(conn, order, s.settings))


@orders_api.get("/api/merchants/<slug>/orders")
@scope(Scope.MERCHANT)
def list_orders(slug: str) -> Response:
    status = request.args.get("status") or None
    exception = request.args.get("exception") or None
    errors: dict[str, str] = {}
    if status and status not in {s.value for s in OrderStatus}:
        errors["status"] = f"unknown order status {status!r}"
    if exception and exception not in {e.value for e in ExceptionClass}:
        errors["exception"] = f"unknown exception class {exception!r}"
    try:
        page = page_args(request.args, default=50, maximum=500, decode_cursor=order_store.CURSOR.decode)
    except Invalid as exc:
        raise Invalid({**errors, **exc.fields}) from None
    if errors:
        raise Invalid(errors)
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
        found, next_cursor = order_store.page(
            conn, merchant.id, status=status, exception=exception, limit=page.limit, before_id=page.cursor
        )
    return jsonify({"orders": [o.to_public() for o in found], "next_cursor": next_cursor})


def _order_view(conn: Any, order: Order, settings: Any) -> dict[str, Any]:
    merchant = merchant_store.get_by_id(conn, order.merchant_id)
    shipments = [shipment_view(conn, merchant, row) for row in shipment_store.for_order(conn, order.id)]
    return {
        **order.to_public(),
        "shipments": shipments,
        "notifications": [
            notification_store.to_public(n) for n in notification_store.for_order(conn, order.id)
        ],
    }


def shipment_view(conn: Any, merchant: Merchant, row: ShipmentRow) -> dict[str, Any]:
    """One shipment as the orders API shows it (also the answer of a Shippo refresh)."""
    from notifiers.links import shipment_tracking_url

    st = row.state
    return {
        "id": row.id,
        "carrier": st.carrier,
        "tracking_number": st.tracking_number,
        "tracking_url": shipment_tracking_url(st, merchant.tracking_url_template),
        "status": st.status.value if st.status else None,
        "substatus": st.substatus,
        "exception": st.exception.to_contract() if st.exception else None,
        "eta": st.eta.isoformat() if st.eta else None,
        "last_scan_at": st.last_scan_at.isoformat() if st.last_scan_at else None,
        "last_location": st.last_location or None,
        "label_url": st.label_url,
        "test": st.test,
        "history": shipment_store.history(conn, row.id),
        "timeline": shipment_store.timeline(conn, row.id),
    }
