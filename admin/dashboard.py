"""The ops dashboard: ``GET /ops`` (one server-rendered page), sign-in/out, and the one
JSON endpoint the page needs beyond the ops API (``GET /api/ops/summary``).

The page itself (``admin/pages/ops_dashboard.html`` + ``admin/static/ops.js`` and
``ops.css``, no build step) polls the existing endpoints: ``/api/ops/queues``
every 2 s, ``/api/ops/dead-letters``, ``/api/ops/webhooks``, the template API and
``/api/ops/summary`` (open exceptions by merchant, notification outcomes of the
last 24 h, recent outbox messages, health alerts and ops alert mail).

Sign-in: the browser cannot send the bearer token on a page load, so
``POST /ops/login`` takes the admin token once and sets the signed session cookie
(:mod:`admin.auth`). Every state-changing fetch from the page carries
``X-Parcelhook-CSRF`` read from a ``<meta>`` tag.

Templates and static files live next to this module (the blueprint's own
``pages/`` and ``static/`` folders, static served under ``/static/ops/``, which
the auth layer leaves open so the sign-in page has its styles).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, session
from sqlalchemy.engine import Connection

from admin import auth
from admin.outbox_api import with_removal_note
from admin.scopes import Scope, scope
from admin.services import services
from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind
from store import merchants as merchant_store
from store import notifications as notification_store
from store import ops as ops_store
from store.database import utcnow

dashboard = Blueprint(
    "dashboard", __name__, template_folder="pages", static_folder="static", static_url_path="/static/ops"
)

OUTBOX_PREVIEWS = 8


def _signed_in() -> bool:
    return session.get("admin") is True


@dashboard.get("/ops/login")
@scope(Scope.OPEN)
def login_form() -> str | Response:
    if _signed_in():
        return redirect("/ops")  # type: ignore[return-value]
    return render_template("ops_login.html", error=None)


@dashboard.post("/ops/login")
@scope(Scope.OPEN)
def login() -> Response | tuple[str, int]:
    token = services().settings.admin_token or ""
    given = request.form.get("token", "")
    if not given or not auth.sign_in(token, given):
        return render_template("ops_login.html", error="That token is not the admin token. Try again."), 401
    return redirect("/ops")  # type: ignore[return-value]


@dashboard.post("/ops/logout")
@scope(Scope.ADMIN)
def logout() -> Response:
    session.clear()
    return jsonify({"signed_out": True})


@dashboard.get("/ops")
@scope(Scope.ADMIN)
def page() -> str:
    s = services()
    with s.database.read() as conn:
        slugs = [m.slug for m in merchant_store.list_all(conn)]
    kinds = [k.value for k in NotificationKind]
    return render_template(
        "ops_dashboard.html",
        csrf=auth.csrf_token(),
        merchants=slugs,
        kinds=kinds,
        email_only=sorted(k.value for k in MERCHANT_ALERTS),
        channels=[c.value for c in Channel],
        queues=list(s.queues),
    )


def _exceptions(conn: Connection) -> list[dict[str, Any]]:
    """Open shipment exceptions per merchant and class, the merchant with the most first."""
    by_merchant: dict[str, dict[str, Any]] = {}
    for r in ops_store.open_exceptions(conn):
        entry = by_merchant.setdefault(r.merchant, {"merchant": r.merchant, "total": 0, "classes": []})
        entry["total"] += r.count
        entry["classes"].append(
            {
                "class": r.cls,
                "count": r.count,
                "oldest_scan": r.oldest_scan.isoformat() if r.oldest_scan else None,
            }
        )
    return sorted(by_merchant.values(), key=lambda e: -e["total"])


def _notification_outcomes(conn: Connection, hours: int = 24) -> list[dict[str, Any]]:
    outcomes = ops_store.notification_outcomes(conn, since=utcnow() - timedelta(hours=hours))
    return [{"channel": o.channel, "status": o.status, "count": o.count} for o in outcomes]


def _health(s: Any) -> dict[str, Any]:
    from workers import health

    client = s.redis
    stored = health.stored_alerts(client)
    alerts = [{**a, "live": False} for a in stored.values()]
    # Rules that need no history are also evaluated now: the stored set is only as fresh as
    # the last scheduled check, and "no live worker" cannot be noticed by a worker itself.
    for a in health.live_alerts(
        client, s.namespace, s.queues, s.telemetry, rabbit=health.rabbit_queues(s.settings)
    ):
        if a.key not in stored and a.kind in ("queue_age", "no_worker"):
            alerts.append({**a.as_json(), "since": None, "last_seen": None, "live": True})
    order = {"critical": 0, "warning": 1}
    alerts.sort(key=lambda a: (order.get(a.get("severity", ""), 2), a.get("key", "")))
    return {"alerts": alerts, "last_check": health.last_check(client), "mail": health.recent_mail(client, 10)}


@dashboard.get("/api/ops/summary")
@scope(Scope.ADMIN)
def summary() -> Response:
    s = services()
    with s.database.read() as conn:
        exceptions = _exceptions(conn)
        outcomes = _notification_outcomes(conn)
        outbox = notification_store.outbox_list(conn, merchant_id=None, limit=OUTBOX_PREVIEWS)
        slugs = ops_store.merchant_slugs(conn)
        owners = ops_store.outbox_owners(conn, [m["id"] for m in outbox])
    for m in outbox:
        m["merchant"] = slugs.get(owners.get(m["id"], -1))
        with_removal_note(m, s.settings)
    try:
        health_view = _health(s)
    except Exception as exc:  # the broker being down must not blank the whole page
        health_view = {"alerts": [], "last_check": None, "mail": [], "error": f"broker unavailable: {exc}"}
    return jsonify(
        {
            "exceptions": exceptions,
            "notifications_24h": outcomes,
            "outbox": outbox,
            "health": health_view,
            "merchants": sorted(slugs.values()),
            "generated_at": utcnow().isoformat(),
        }
    )
