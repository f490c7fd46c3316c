"""Ops endpoints of the admin app (docs/api.md, Ops): queues, dead letters, recent webhooks, /metrics.

Dependencies come from ``current_app.extensions["parcelhook"]`` (settings,
redis, namespace, queues, telemetry). Auth is applied app-wide by the app
factory. Errors in the shape of both apps (ingest/errors.py): invalid input is the app's 422
``{"error": "invalid", "message": ..., "fields": {field: message}}``; a broker that cannot be
reached is 503 ``{"error": "unavailable", "message": "broker unreachable; retry"}``.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from admin.auth import merchant_filter
from admin.dead_letters import dead_letters_for
from admin.metrics import render_metrics
from admin.paging import page_args
from admin.queues import inspector_for
from admin.scopes import Scope, scope
from admin.validation import Invalid
from domain.vocabulary import DeliveryOutcome
from ingest.errors import error_response
from workers.rabbitmq_state import RabbitUnreachable

ops_api = Blueprint("ops_api", __name__)

LIMIT_MAX = 1000


def _services() -> Any:
    return current_app.extensions["parcelhook"]


def _queue(value: object, services: Any, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise Invalid({"queue": "required"})
        return None
    if not isinstance(value, str) or value not in services.queues:
        raise Invalid({"queue": f"unknown queue; one of {', '.join(services.queues)}"})
    return value


@ops_api.errorhandler(redis.RedisError)
def _broker_down(exc: redis.RedisError) -> Response:
    current_app.logger.warning("ops: redis unavailable: %s", exc)
    return error_response(503, "unavailable", "broker unreachable; retry", headers={"Retry-After": "5"})


@ops_api.errorhandler(RabbitUnreachable)
def _rabbit_down(exc: RabbitUnreachable) -> Response:
    current_app.logger.warning("ops: %s", exc)  # names the host, never credentials
    return error_response(503, "unavailable", "broker unreachable; retry", headers={"Retry-After": "5"})


@ops_api.get("/api/ops/queues")
@scope(Scope.ADMIN)
def queues() -> Response:
    s = _services()
    return jsonify(inspector_for(s).snapshot())


@ops_api.get("/api/ops/dead-letters")
@scope(Scope.ADMIN)
def dead_letters() -> Response:
    s = _services()
    limit = page_args(request.args, default=100, maximum=LIMIT_MAX).limit
    queue = _queue(request.args.get("queue"), s, required=False)
    dl = dead_letters_for(s)
    names = [queue] if queue else list(s.queues)
    items = [d.as_json() for name in names for d in dl.list(name, limit)]
    items.sort(key=lambda d: d["dead_lettered_at"] or "", reverse=True)
    counts = {name: dl.count(name) for name in names}
    return jsonify({"dead_letters": items[:limit], "counts": counts})


def _bulk_body(services: Any) -> tuple[str, list[str] | None]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid({"body": "a JSON object is required"})
    fields: dict[str, str] = {}
    queue = None
    try:
        queue = _queue(body.get("queue"), services)
    except Invalid as exc:
        fields.update(exc.fields)
    ids = body.get("ids")
    all_ = body.get("all", False)
    if not isinstance(all_, bool):
        fields["all"] = "must be a boolean"
    elif all_ and ids is not None:
        fields["ids"] = "give either ids or all, not both"
    elif not all_:
        if ids is None:
            fields["ids"] = 'required (or "all": true)'
        elif not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            fields["ids"] = "must be a non-empty list of dead-letter ids (strings)"
        elif len(ids) > 10000:
            fields["ids"] = "at most 10000 ids per request"
    if fields or queue is None:
        raise Invalid(fields or {"queue": "required"})
    return queue, (None if all_ else ids)


@ops_api.post("/api/ops/dead-letters/requeue")
@scope(Scope.ADMIN)
def requeue() -> Response:
    return _bulk("requeue", "requeued")


@ops_api.post("/api/ops/dead-letters/purge")
@scope(Scope.ADMIN)
def purge() -> Response:
    return _bulk("purge", "purged")


def _bulk(action: str, done_word: str) -> Response:
    """Requeue or purge the given ids (or all) of one queue; ``ignored`` counts unknown ids."""
    s = _services()
    queue, ids = _bulk_body(s)
    n = getattr(dead_letters_for(s), action)(queue, ids)
    out: dict[str, Any] = {"queue": queue, done_word: n}
    if ids is not None:
        out["ignored"] = len(set(ids)) - n
    return jsonify(out)


@ops_api.get("/api/ops/webhooks")
@scope(Scope.MERCHANT_FILTERED)
def webhooks() -> Response:
    s = _services()
    limit = page_args(request.args, default=100, maximum=LIMIT_MAX).limit
    merchant = merchant_filter()  # a merchant key sees its own merchant only
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in {o.value for o in DeliveryOutcome}:
        raise Invalid({"outcome": f"unknown delivery outcome {outcome!r}"})
    return jsonify(
        {"deliveries": s.telemetry.recent_webhooks(merchant=merchant, outcome=outcome, limit=limit)}
    )


@ops_api.get("/metrics")
@scope(Scope.ADMIN)
def metrics() -> Response:
    body, content_type = render_metrics(_services())
    return Response(body, status=200, content_type=content_type)
