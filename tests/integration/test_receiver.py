"""The receiver's status table (docs/api.md, Receiver), row by row, against real Redis and databases."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ingest.signature import HEADER, sign
from tests.fixtures.shippo import SAMPLES, raw
from tests.integration.conftest import System, hmac_secret
from tests.support.services import RedisServer

pytestmark = pytest.mark.redis


def queued_messages(system: System, queue: str = "events") -> int:
    return int(system.broker.client.llen(f"parcelhook:{queue}"))


def test_a_new_event_is_queued_durably_before_the_answer(system: System) -> None:
    merchant = system.create_merchant()
    response = system.post(merchant, raw("track_updated_transit.json"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "queued"
    assert body["event_id"].startswith("track:")
    assert queued_messages(system) == 1


def test_the_same_event_again_is_a_duplicate_with_the_same_id(system: System) -> None:
    merchant = system.create_merchant()
    first = system.post(merchant, raw("track_updated_transit.json")).get_json()
    second = system.post(merchant, raw("track_updated_transit.json"))
    assert second.status_code == 200
    assert second.get_json() == {"status": "duplicate", "event_id": first["event_id"]}
    assert queued_messages(system) == 1


def test_a_retry_with_reordered_keys_is_still_a_duplicate(system: System) -> None:
    merchant = system.create_merchant()
    body = json.loads(raw("track_updated_delivered.json"))
    system.post(merchant, json.dumps(body))
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    assert system.post(merchant, reordered).get_json()["status"] == "duplicate"


@pytest.mark.parametrize("sample", ["batch_created.json"])
def test_valid_events_we_do_not_act_on_are_ignored_but_recorded(system: System, sample: str) -> None:
    merchant = system.create_merchant()
    response = system.post(merchant, raw(sample))
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert queued_messages(system) == 1  # recorded by the worker as an ignored delivery


def test_an_unknown_event_name_is_ignored(system: System) -> None:
    merchant = system.create_merchant()
    response = system.post(merchant, json.dumps({"event": "refund_created", "data": {"x": 1}}))
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"


def test_an_unknown_merchant_is_404(system: System) -> None:
    response = system.post({"slug": "nobody", "webhook_token": "x"}, raw("track_updated_transit.json"))
    assert response.status_code == 404
    assert "nobody" in response.get_json()["message"]
    assert queued_messages(system) == 0


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_bad_or_missing_token_is_401_and_nothing_is_queued(system: System, token: str | None) -> None:
    merchant = system.create_merchant()
    url = f"/webhooks/shippo/{merchant['slug']}" + (f"?token={token}" if token else "")
    response = system.web.post(url, data=raw("track_updated_transit.json"), content_type="application/json")
    assert response.status_code == 401
    assert "token" in response.get_json()["message"]
    assert queued_messages(system) == 0


def test_a_signed_webhook_is_accepted_with_any_configured_secret(system: System) -> None:
    old, new = hmac_secret(), hmac_secret()
    merchant = system.create_merchant(hmac_secrets=[old, new])
    assert "hmac_secrets" not in merchant  # write-only
    assert (
        system.post(merchant, raw("track_updated_transit.json"), secret=new).get_json()["status"] == "queued"
    )
    assert (
        system.post(merchant, raw("track_updated_delivered.json"), secret=old).get_json()["status"]
        == "queued"
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("t=123", "no v1"),
        ("v1=abc", "no t="),
        ("t=now,v1=" + "0" * 64, "does not match"),
        ("t=stale", "away from now"),
    ],
)
def test_a_bad_missing_or_stale_signature_is_401(system: System, header: str | None, reason: str) -> None:
    secret = hmac_secret()
    merchant = system.create_merchant(hmac_secrets=[secret])
    body = raw("track_updated_transit.json")
    headers = {}
    if header == "t=stale":
        headers[HEADER] = sign(secret, body, int(time.time()) - 301)
    elif header is not None:
        headers[HEADER] = header.replace("now", str(int(time.time())))
    response = system.post(merchant, body, headers=headers)
    assert response.status_code == 401
    assert reason in response.get_json()["message"]
    assert queued_messages(system) == 0


def test_a_signature_over_another_body_is_401(system: System) -> None:
    secret = hmac_secret()
    merchant = system.create_merchant(hmac_secrets=[secret])
    headers = {HEADER: sign(secret, raw("track_updated_delivered.json"), int(time.time()))}
    assert system.post(merchant, raw("track_updated_transit.json"), headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"data": {}}', "event"),
        (b'{"event": "track_updated"}', "data"),
        (b'{"event": "track_updated", "data": "text"}', "data"),
        (b'{"event": "track_updated", "data": {"carrier": "usps"}}', "tracking"),
        (b"", "empty"),
        (
            b'{"event": "track_updated", "data": {"carrier": "usps", "tracking_number": "1", "tracking_status":'
            b' {"object_id": "x", "status": "TRANSIT", "status_date": "yesterday-ish"}}}',
            "status_date",
        ),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_a_malformed_body_is_400_naming_the_problem(system: System, body: bytes, problem: str) -> None:
    merchant = system.create_merchant()
    response = system.post(merchant, body)
    assert response.status_code == 400
    assert problem.lower() in response.get_json()["message"].lower()
    assert queued_messages(system) == 0


def test_a_non_json_content_type_is_415(system: System) -> None:
    merchant = system.create_merchant()
    response = system.post(
        merchant, raw("track_updated_transit.json"), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert "text/plain" in response.get_json()["message"]


def test_a_body_over_the_limit_is_413_without_reading_it(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url, max_body_bytes=2048)
    merchant = system.create_merchant()
    big = b'{"event": "track_updated", "data": {"pad": "' + b"x" * 5000 + b'"}}'
    response = system.post(merchant, big)
    assert response.status_code == 413
    assert "2048" in response.get_json()["message"]
    # no Content-Length (chunked): read no further than limit + 1
    url = f"/webhooks/shippo/{merchant['slug']}?token={merchant['webhook_token']}"
    response = system.web.post(
        url,
        input_stream=__import__("io").BytesIO(big),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_every_sample_is_accepted(system: System) -> None:
    merchant = system.create_merchant()
    assert SAMPLES, "tests/fixtures/shippo holds the samples"
    for sample in SAMPLES:
        response = system.post(merchant, raw(sample))
        assert response.status_code == 200, (sample, response.get_json())
        assert response.get_json()["status"] in ("queued", "ignored", "duplicate")


def test_a_broker_outage_is_503_with_retry_after_and_shippos_retry_is_processed_once(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer
) -> None:
    system = make_system(sqlite_url)
    merchant = system.create_merchant()
    system.start_worker()
    redis_service.stop()
    try:
        response = system.post(merchant, raw("track_updated_delivered.json"))
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "retry" in response.get_json()["message"]
    finally:
        redis_service.start()
    retry = system.post(merchant, raw("track_updated_delivered.json"))
    assert retry.get_json()["status"] == "queued"
    assert system.post(merchant, raw("track_updated_delivered.json")).get_json()["status"] == "duplicate"
    system.drain()
    from store.schema import deliveries, shipments

    with system.database.read() as conn:
        assert conn.execute(deliveries.select()).fetchall().__len__() == 1
        rows = conn.execute(shipments.select()).fetchall()
    assert len(rows) == 1
    assert rows[0].status == "delivered"


def test_the_database_down_is_503_not_500(make_system: Callable[..., System], tmp_path: Path) -> None:
    system = make_system(f"sqlite:///{tmp_path}/missing/dir/that/cannot/exist/bad.db")
    response = system.post({"slug": "acme", "webhook_token": "x"}, raw("track_updated_transit.json"))
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)


def test_health_and_readiness(system: System) -> None:
    assert system.web.get("/healthz").status_code == 200
    ready = system.web.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"broker": "ok", "database": "ok"}


def test_readiness_fails_when_the_broker_is_down(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer
) -> None:
    system = make_system(sqlite_url)
    redis_service.stop()
    try:
        response = system.web.get("/readyz")
    finally:
        redis_service.start()
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"].startswith("unreachable")


def test_the_old_token_keeps_working_after_rotation(system: System) -> None:
    merchant = system.create_merchant()
    rotated = system.admin.post(
        f"/api/merchants/{merchant['slug']}/rotate-token", headers=system.auth()
    ).get_json()
    assert rotated["webhook_token"] != merchant["webhook_token"]
    system.web.application.extensions["parcelhook"].merchants.ttl_s = 0
    old = system.post(merchant, raw("track_updated_transit.json"))
    new = system.post(rotated, raw("track_updated_delivered.json"))
    assert (old.status_code, new.status_code) == (200, 200)


def test_redis_keeps_queued_events_across_a_restart(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer
) -> None:
    system = make_system(sqlite_url)
    merchant = system.create_merchant()
    system.post(merchant, raw("track_updated_transit.json"))
    redis.Redis.from_url(redis_service.url).bgrewriteaof()
    time.sleep(0.5)
    redis_service.stop()
    redis_service.start()
    assert queued_messages(system) == 1


def test_werkzeug_errors_on_web_stay_4xx_json(system: System) -> None:
    assert system.web.get("/webhooks/shippo/acme").status_code == 405
    response = system.web.get("/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
