"""The public receiver (`web` process): Shippo and Twilio webhooks and health. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dramatiq
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from config import Settings
from ingest.errors import Rejection, error_response, http_error_response
from ingest.health import health
from ingest.merchant_cache import MerchantCache
from ingest.queue import AtomicSubmit, EventQueue
from ingest.services import EXTENSION, Services
from ingest.shippo import shippo
from ingest.twilio import twilio_callbacks
from ingest.unsubscribe import unsubscribe
from store.database import Database
from workers.actors import bind, process_event
from workers.broker import build_broker
from workers.state import state_redis
from workers.telemetry import Telemetry

log = logging.getLogger("parcelhook.ingest")


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    broker: dramatiq.Broker | None = None,
    send_event: Callable[..., Any] | None = None,
) -> Flask:
    """Build the receiver. The actors are bound to ``broker`` (default: one built from
    ``settings``); ``send_event`` defaults to ``process_event.send``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # we enforce the limit ourselves, before reading
    db = database or Database(settings.database_url)
    the_broker = broker or build_broker(settings)
    bind(the_broker)
    redis_client = state_redis(settings)
    app.extensions[EXTENSION] = Services(
        settings=settings,
        broker=the_broker,
        database=db,
        merchants=MerchantCache(db, settings.vault),
        # one round trip per webhook when the broker is a RedisBroker on this Redis (ingest/queue.py)
        queue=EventQueue(
            redis_client,
            send_event or process_event.send,
            atomic=None if send_event else AtomicSubmit(redis_client, process_event),
        ),
        redis=redis_client,
        telemetry=Telemetry(redis_client),
    )

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
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        # werkzeug's own 4xx (no route, wrong method, malformed request): JSON, never a 503
        messages = {404: f"no route for {request.path}", 405: f"{request.method} is not allowed here"}
        return http_error_response(exc, messages.get(exc.code or 500))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug, not an outage: 503 means only "a dependency is unreachable" (ingest/errors.py), so an
        # unforeseen exception is a plain JSON 500 — never a traceback, never a promise that a retry helps.
        log.error(
            "unexpected %s in receiver for %s %s",
            type(exc).__name__,
            request.method,
            request.path,
            exc_info=exc,
        )
        return error_response(500, "internal_error", "unexpected error; it has been logged")

    return app
