"""The public receiver (`web` process): Shippo and Twilio webhooks and health. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from config import Settings
from ingest.errors import Rejection
from ingest.merchant_cache import MerchantCache
from ingest.queue import EventQueue
from store.database import Database

log = logging.getLogger("parcelhook.ingest")


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    broker: Any = None,
    send_event: Callable[..., Any] | None = None,
) -> Flask:
    """Build the receiver. ``broker``/``send_event`` default to the worker broker's actor handle."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # we enforce the limit ourselves, before reading
    db = database or Database(settings.database_url)
    if broker is None or send_event is None:
        from workers.actors import process_event
        from workers.broker import broker as default_broker

        broker = broker or default_broker
        send_event = send_event or process_event.send
    from workers.state import state_redis
    from workers.telemetry import Telemetry

    redis_client = state_redis(settings)
    app.extensions["parcelhook"] = _Services(
        settings=settings,
        database=db,
        merchants=MerchantCache(db, settings.vault),
        queue=EventQueue(redis_client, send_event),
        redis=redis_client,
        telemetry=Telemetry(redis_client),
    )

    from ingest.health import health
    from ingest.shippo import shippo
    from ingest.twilio import twilio_callbacks
    from ingest.unsubscribe import unsubscribe

    app.register_blueprint(health)
    app.register_blueprint(shippo)
    app.register_blueprint(twilio_callbacks)
    app.register_blueprint(unsubscribe)

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()
        g.received_at = datetime.now(UTC)

    @app.errorhandler(Rejection)
    def _rejected(exc: Rejection) -> Response:
        response = jsonify(exc.body())
        response.status_code = exc.status_code
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        # werkzeug's own 4xx (no route, wrong method, malformed request): JSON, never a 503
        code = exc.code or 400
        messages = {404: f"no route for {request.path}", 405: f"{request.method} is not allowed here"}
        name = exc.name.lower().replace(" ", "_")
        return jsonify({"error": name, "message": messages.get(code, exc.description or exc.name)}), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        # A bug, not an outage: 503 means only "a dependency is unreachable" (ingest/errors.py), so an
        # unforeseen exception is a plain JSON 500 — never a traceback, never a promise that a retry helps.
        log.error("unexpected %s in receiver for %s %s", type(exc).__name__, request.method, request.path,
                  exc_info=exc)
        return jsonify({"error": "internal_error", "message": "unexpected error; it has been logged"}), 500

    return app


class _Services:
    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def services() -> Any:
    from flask import current_app

    return current_app.extensions["parcelhook"]
