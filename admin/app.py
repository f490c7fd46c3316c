"""The internal admin app (`admin` process): JSON admin API, ops dashboard, /metrics."""

from __future__ import annotations

import logging

import dramatiq
from flask import Flask

from admin import auth, errors
from admin.customers_api import customers_api
from admin.dashboard import dashboard
from admin.keys_api import keys_api
from admin.merchant_page import merchant_page
from admin.merchants_api import merchants_api
from admin.openapi import openapi
from admin.ops_api import ops_api
from admin.orders_api import orders_api
from admin.outbox_api import outbox_api
from admin.scopes import Scope, declare
from admin.services import EXTENSION, Services
from admin.shippo_routes import shippo_routes
from admin.templates_api import templates_api
from config import Settings, SettingsError
from workers.actors import bind
from workers.broker import build_broker

log = logging.getLogger("parcelhook.admin")


def create_app(
    settings: Settings, *, services: Services | None = None, broker: dramatiq.Broker | None = None
) -> Flask:
    """Build the admin app. The actors (``PUT`` of an order sends its catch-up) are bound to
    ``broker`` (default: one built from ``settings``)."""
    if not settings.admin_token:
        raise SettingsError("PARCELHOOK_ADMIN_TOKEN is not set (and var/admin-token does not exist)")
    app = Flask(__name__, template_folder="pages", static_folder="static")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    bind(broker or build_broker(settings))
    app.extensions[EXTENSION] = services or Services.from_settings(settings)
    auth.install(app, settings.admin_token)

    for blueprint in (
        merchants_api,
        orders_api,
        shippo_routes,
        ops_api,
        templates_api,
        outbox_api,
        openapi,
        customers_api,
        keys_api,
        dashboard,
        merchant_page,
    ):
        app.register_blueprint(blueprint)
    # Every route declares who may call it (admin/scopes.py); the static files are open.
    declare(app, "static", Scope.OPEN)
    declare(app, "dashboard.static", Scope.OPEN)

    errors.install(app)  # one JSON error shape in both apps (admin/errors.py)
    return app
