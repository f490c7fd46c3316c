"""The internal admin app (`admin` process): JSON admin API, ops dashboard, /metrics."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from admin import auth
from admin.validation import Invalid
from config import Settings
from store.database import Database
from store.errors import Conflict, NotFound, StorageUnavailable

log = logging.getLogger("parcelhook.admin")


class Services:
    """What the admin blueprints (and the CLI) share: settings, database, broker Redis."""

    def __init__(self, settings: Settings, database: Database | None = None, redis_client: Any = None) -> None:
        from workers.broker import QUEUES
        from workers.telemetry import Telemetry

        self.settings = settings
        self.database = database or Database(settings.database_url)
        self.engine = self.database.engine
        from workers.state import state_redis

        self.redis = redis_client or state_redis(settings)
        self.namespace = settings.broker_namespace
        self.queues = QUEUES
        self.telemetry = Telemetry(self.redis)


def create_app(settings: Settings, *, services: Services | None = None) -> Flask:
    if not settings.admin_token:
        from config import SettingsError

        raise SettingsError("PARCELHOOK_ADMIN_TOKEN is not set (and var/admin-token does not exist)")
    app = Flask(__name__, template_folder="pages", static_folder="static")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["parcelhook"] = services or Services(settings)
    auth.install(app, settings.admin_token)

    from admin.merchants_api import merchants_api
    from admin.ops_api import ops_api
    from admin.orders_api import orders_api

    for blueprint in (merchants_api, orders_api, ops_api):
        app.register_blueprint(blueprint)
    _register_optional(app)

    @app.errorhandler(Invalid)
    def _invalid(exc: Invalid) -> tuple[Response, int]:
        return jsonify({"error": "invalid", "message": str(exc), "fields": exc.fields}), 422

    @app.errorhandler(NotFound)
    def _missing(exc: NotFound) -> tuple[Response, int]:
        return jsonify({"error": "not_found", "message": str(exc)}), 404

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> tuple[Response, int]:
        return jsonify({"error": "conflict", "message": str(exc)}), 409

    @app.errorhandler(StorageUnavailable)
    def _unavailable(exc: StorageUnavailable) -> tuple[Response, int]:
        return jsonify({"error": "unavailable", "message": "database unreachable; retry"}), 503

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        return jsonify({"error": exc.name.lower().replace(" ", "_"), "message": exc.description}), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in admin %s %s", request.method, request.path)
        return jsonify({"error": "internal", "message": f"{type(exc).__name__}; see the admin log"}), 500

    return app


def _register_optional(app: Flask) -> None:
    """Blueprints of later capabilities register here (templates, outbox, dashboard)."""
    import importlib

    for module, name in (
        ("admin.templates_api", "templates_api"),
        ("admin.outbox_api", "outbox_api"),
        ("admin.dashboard", "dashboard"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.register_blueprint(getattr(mod, name))


def services() -> Services:
    from flask import current_app

    return current_app.extensions["parcelhook"]  # type: ignore[no-any-return]


def json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise Invalid({"body": "must be a JSON object (Content-Type: application/json)"})
    return body
