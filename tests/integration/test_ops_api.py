"""The ops API (docs/api.md, Ops) through Flask's test client, on a real Redis and broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from admin import errors
from admin.ops_api import ops_api
from tests.integration.ops_fixtures import dead_letters_on, ops_services_for, stand_in
from tests.support.deliveries import delivery
from tests.support.services import free_port
from workers.broker import QUEUES
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis


def make_app(client: redis.Redis) -> Flask:
    app = Flask(__name__)
    app.extensions["parcelhook"] = ops_services_for(client)
    app.register_blueprint(ops_api)
    errors.install(app)
    return app


@pytest.fixture()
def http(redis_client: redis.Redis) -> FlaskClient:
    return make_app(redis_client).test_client()


def test_queues_endpoint_has_the_contract_shape(ops_broker: RedisBroker, http: FlaskClient) -> None:
    actor = stand_in(ops_broker, queue="notifications", name="send_notification")
    actor.send(1)
    actor.send(2)
    r = http.get("/api/ops/queues")
    assert r.status_code == 200
    body = r.get_json()
    assert [q["name"] for q in body["queues"]] == list(QUEUES)
    notifications = body["queues"][1]
    assert {k: notifications[k] for k in ("ready", "delayed", "dead", "in_flight")} == {
        "ready": 2,
        "delayed": 0,
        "dead": 0,
        "in_flight": 0,
    }
    assert notifications["oldest_age_s"] >= 0
    assert body["workers"] == []  # the sender is not a worker (workers/heartbeat.py)


def test_dead_letters_list_requeue_purge(
    ops_broker: RedisBroker, http: FlaskClient, redis_client: redis.Redis
) -> None:
    dead_letters_on(ops_broker, "events", 3, RuntimeError("db down"))
    r = http.get("/api/ops/dead-letters?queue=events&limit=10")
    assert r.status_code == 200
    body = r.get_json()
    assert body["counts"] == {"events": 3}
    letters = body["dead_letters"]
    assert len(letters) == 3
    assert {d["event_id"] for d in letters} == {"ev-0", "ev-1", "ev-2"}
    assert letters[0]["last_error"] == "RuntimeError: db down"
    assert letters[0]["attempts"] == 1
    all_queues = http.get("/api/ops/dead-letters").get_json()
    assert all_queues["counts"] == {"events": 3, "notifications": 0, "maintenance": 0}
    assert len(http.get("/api/ops/dead-letters?limit=2").get_json()["dead_letters"]) == 2

    r = http.post(
        "/api/ops/dead-letters/requeue", json={"queue": "events", "ids": [letters[0]["id"], "nope"]}
    )
    assert r.status_code == 200
    assert r.get_json() == {"queue": "events", "requeued": 1, "ignored": 1}
    assert redis_client.llen("parcelhook:events") == 1

    r = http.post("/api/ops/dead-letters/purge", json={"queue": "events", "ids": [letters[1]["id"]]})
    assert r.get_json() == {"queue": "events", "purged": 1, "ignored": 0}
    r = http.post("/api/ops/dead-letters/requeue", json={"queue": "events", "all": True})
    assert r.get_json() == {"queue": "events", "requeued": 1}
    assert redis_client.llen("parcelhook:events") == 2
    r = http.post("/api/ops/dead-letters/purge", json={"queue": "events", "all": True})
    assert r.get_json() == {"queue": "events", "purged": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue": "nope", "ids": ["a"]}, "queue"),
        ({"ids": ["a"]}, "queue"),
        ({"queue": "events"}, "ids"),
        ({"queue": "events", "ids": []}, "ids"),
        ({"queue": "events", "ids": "a"}, "ids"),
        ({"queue": "events", "ids": [1]}, "ids"),
        ({"queue": "events", "all": "yes"}, "all"),
        ({"queue": "events", "all": True, "ids": ["a"]}, "ids"),
        ({"queue": "events", "all": False}, "ids"),
        (["events"], "body"),
    ],
)
@pytest.mark.parametrize("action", ["requeue", "purge"])
def test_bulk_actions_reject_bad_bodies_with_422(
    http: FlaskClient, body: object, field: str, action: str
) -> None:
    r = http.post(f"/api/ops/dead-letters/{action}", json=body)
    assert r.status_code == 422
    assert r.get_json()["error"]
    assert field in r.get_json()["fields"]


def test_a_body_that_is_not_json_is_422(http: FlaskClient) -> None:
    r = http.post("/api/ops/dead-letters/purge", data="all", content_type="text/plain")
    assert r.status_code == 422
    assert "body" in r.get_json()["fields"]


@pytest.mark.parametrize("url", ["/api/ops/dead-letters", "/api/ops/webhooks"])
@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-5"])
def test_limit_must_be_between_1_and_1000(http: FlaskClient, url: str, limit: str) -> None:
    r = http.get(f"{url}?limit={limit}")
    assert r.status_code == 422
    assert "limit" in r.get_json()["fields"]


def test_dead_letters_of_an_unknown_queue_is_422(http: FlaskClient) -> None:
    r = http.get("/api/ops/dead-letters?queue=nope")
    assert r.status_code == 422
    assert "queue" in r.get_json()["fields"]


def test_recent_webhooks_filtered(http: FlaskClient, redis_client: redis.Redis) -> None:
    t = Telemetry(redis_client)
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    t.webhook(**delivery(at=at))
    t.webhook(**delivery("acme", "bad_signature", 401, "bad signature", at=at))
    t.webhook(**delivery("bolt", at=at))
    r = http.get("/api/ops/webhooks?merchant=acme&outcome=bad_signature")
    assert r.status_code == 200
    assert r.get_json() == {
        "deliveries": [
            {
                "merchant": "acme",
                "event": "track_updated",
                "outcome": "bad_signature",
                "status_code": 401,
                "reason": "bad signature",
                "received_at": "2024-05-01T10:00:00+00:00",
                "test": False,
            }
        ]
    }
    assert len(http.get("/api/ops/webhooks").get_json()["deliveries"]) == 3
    assert len(http.get("/api/ops/webhooks?limit=2").get_json()["deliveries"]) == 2


def test_metrics_endpoint_serves_prometheus_text(ops_broker: RedisBroker, http: FlaskClient) -> None:
    actor = stand_in(ops_broker, queue="maintenance", name="stall_check")
    actor.send()
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.content_type.startswith("text/plain")
    values = {
        (s.name, tuple(s.labels.items())): s.value
        for f in text_string_to_metric_families(r.get_data(as_text=True))
        for s in f.samples
    }
    assert values[("parcelhook_queue_ready_messages", (("queue", "maintenance"),))] == 1


def test_broker_down_is_503_not_500() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    http = make_app(down).test_client()
    r = http.get("/api/ops/queues")
    assert r.status_code == 503
    assert r.headers["Retry-After"]
    assert http.get("/metrics").status_code == 200
