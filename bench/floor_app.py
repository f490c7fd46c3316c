"""The `ingest` floor: the least a webhook receiver can do and still be durable.

Read the body, parse the JSON, LPUSH it to Redis, answer 200. No merchant lookup, no token,
no HMAC, no dedupe, no telemetry. Served by the same gunicorn command and worker count as
``ingest.wsgi:app``; ``BENCH_FLOOR_REDIS_URL`` / ``BENCH_FLOOR_KEY`` say where to push.
"""

from __future__ import annotations

import json
import os

import redis
from flask import Flask, Response, jsonify, request

app = Flask("parcelhook.bench.floor")
_client = redis.Redis.from_url(os.environ.get("BENCH_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))
_key = os.environ.get("BENCH_FLOOR_KEY", "bench:floor")


@app.post("/webhooks/shippo/<slug>")
def receive(slug: str) -> Response:
    raw = request.get_data()
    body = json.loads(raw)
    _client.lpush(_key, raw)
    return jsonify({"status": "queued", "event": body.get("event")})


@app.get("/readyz")
def readyz() -> Response:
    _client.ping()
    return jsonify({"status": "ready"})
