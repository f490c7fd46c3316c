from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from ingest.services import Services, services
from workers.broker import ping

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    for name, probe in _probes(services()).items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), 200 if ready else 503


def _probes(s: Services) -> dict[str, Callable[[], object]]:
    """What must answer for a webhook to be accepted. On Redis the broker is also the state
    store (dedupe, telemetry); on RabbitMQ the state Redis is a dependency of its own."""
    if s.settings.broker_url.startswith("amqp"):
        return {"broker": lambda: ping(s.broker), "state": s.redis.ping, "database": s.database.ping}
    return {"broker": s.redis.ping, "database": s.database.ping}
