from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ingest.services import services

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    s = services()
    checks: dict[str, str] = {}
    try:
        s.redis.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    try:
        s.database.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), 200 if ready else 503
