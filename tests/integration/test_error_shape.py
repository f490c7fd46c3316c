"""Both apps answer every error in one JSON shape (ingest/errors.py, admin/errors.py):
``{"error": <word>, "message": <text>}``, plus ``"fields"`` on a 422 and only there."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from admin.services import EXTENSION
from tests.fixtures.shippo import raw
from tests.integration.conftest import System
from tests.support.services import free_port
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis

WORD = re.compile(r"[a-z]+(_[a-z]+)*")


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    expected = {"error", "message", "fields"} if status == 422 else {"error", "message"}
    assert set(body) == expected, body
    assert WORD.fullmatch(body["error"]), body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    if status == 422:
        assert body["fields"] and all(
            isinstance(k, str) and isinstance(v, str) for k, v in body["fields"].items()
        )
    return body  # type: ignore[no-any-return]


def test_every_receiver_error_has_the_one_shape(system: System) -> None:
    merchant = system.create_merchant()
    web = system.web
    url = f"/webhooks/shippo/{merchant['slug']}?token={merchant['webhook_token']}"
    cases: list[tuple[Callable[[], Any], int, str]] = [
        (lambda: web.get("/no/such/route"), 404, "not_found"),
        (lambda: web.get(url), 405, "method_not_allowed"),
        (lambda: web.post("/webhooks/shippo/nobody?token=x", json={}), 404, "unknown_merchant"),
        (lambda: system.post(merchant, raw("track_updated_transit.json"), token="wrong"), 401, "bad_token"),
        (
            lambda: web.post(url, data="x", headers={"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (lambda: system.post(merchant, "{not json"), 400, "bad_payload"),
    ]
    for request, status, word in cases:
        assert assert_error_shape(request(), status)["error"] == word


def test_every_admin_error_has_the_one_shape(system: System) -> None:
    system.create_merchant("acme")
    admin, auth = system.admin, system.auth()
    cases: list[tuple[Callable[[], Any], int, str]] = [
        (lambda: admin.get("/api/merchants"), 401, "unauthorized"),
        (lambda: admin.get("/api/no/such/route", headers=auth), 404, "not_found"),
        (lambda: admin.delete("/api/merchants/acme", headers=auth), 405, "method_not_allowed"),
        (lambda: admin.get("/api/merchants/nobody", headers=auth), 404, "not_found"),
        (
            lambda: admin.put("/api/merchants/acme", json={"timezone": "Mars/Olympus"}, headers=auth),
            422,
            "invalid",
        ),
        (lambda: admin.get("/api/merchants/acme/orders?limit=0", headers=auth), 422, "invalid"),
        (lambda: admin.get("/api/outbox?limit=x", headers=auth), 422, "invalid"),
        # the ops routes answered {"error": "invalid input", "fields": …} without a message
        (lambda: admin.get("/api/ops/dead-letters?limit=x", headers=auth), 422, "invalid"),
        (lambda: admin.get("/api/ops/dead-letters?queue=nope", headers=auth), 422, "invalid"),
        (lambda: admin.post("/api/ops/dead-letters/purge", json=[], headers=auth), 422, "invalid"),
    ]
    for request, status, word in cases:
        assert assert_error_shape(request(), status)["error"] == word


def test_an_unreachable_broker_on_the_ops_routes_is_a_503_in_the_one_shape(system: System) -> None:
    # it answered {"error": "broker unavailable"} without a message
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    services = system.admin_app.extensions[EXTENSION]
    system.admin_app.extensions[EXTENSION] = dataclasses.replace(
        services, redis=down, telemetry=Telemetry(down)
    )
    for path in ("/api/ops/queues", "/api/ops/dead-letters", "/api/ops/webhooks"):
        response = system.admin.get(path, headers=system.auth())
        assert assert_error_shape(response, 503)["error"] == "unavailable", path
        assert response.headers["Retry-After"] == "5"
