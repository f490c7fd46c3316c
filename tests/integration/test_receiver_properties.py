"""A 200 is a promise: whatever the receiver accepts is stored and processed, on SQLite and PostgreSQL.

Hypothesis mutates realistic Shippo bodies with hostile values — lone surrogates, NUL and other
controls, right-to-left overrides, emoji, fields up to 10× their column, numbers of thousands of
digits, NaN, dates from year 1 to 9999 with offsets, deep nesting, arbitrary JSON — posts each one
to the real receiver (real Redis queue) and then runs every message the receiver queued through the
actors' own code against the real database. It shows:

* never a 5xx: bad input is a 4xx whose message names the problem;
* every 200 is processed: the actors raise nothing (so nothing could retry into a dead letter), the
  delivery row is committed, and the customer messages it caused are rendered and stored.

A second test runs the real dramatiq worker on the examples an adversarial review reported.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings

from store.schema import deliveries, notifications, shipment_scans
from tests.fixtures.shippo import body as sample
from tests.integration.conftest import System
from tests.support.hostile_bodies import ORDER_REF, any_json_body, encode, mutated_webhooks, put

pytestmark = [pytest.mark.redis]

QUEUES = ("events", "notifications", "maintenance")

# --------------------------------------------------------------------------- running what was queued


def run_queued(system: System) -> int:
    """Run every message on the queues through its actor's own code (what a worker thread does),
    follow-ups included, until the queues are empty. An exception is what the worker would retry
    and, at last, dead-letter: it propagates and fails the example. Returns messages run."""
    broker = system.broker
    ran = 0
    for _ in range(50):
        idle = True
        for queue in QUEUES:
            consumer = broker.consume(queue, prefetch=1, timeout=10)
            try:
                while (proxy := next(consumer)) is not None:
                    idle = False
                    actor = broker.get_actor(proxy.actor_name)
                    try:
                        actor.fn(*proxy.args, **proxy.kwargs)
                    finally:
                        consumer.ack(proxy)
                    ran += 1
            finally:
                consumer.close()
        if idle:
            return ran
    raise AssertionError("the queues never emptied")


def delivery_outcome(system: System, event_id: str) -> str | None:
    with system.database.read() as conn:
        return conn.execute(sa.select(deliveries.c.outcome).where(deliveries.c.event_id == event_id)).scalar()


@pytest.fixture()
def hostile_system(make_system: Callable[..., System], database_url: str) -> System:
    system = make_system(database_url)
    system.merchant = system.create_merchant("acme")  # type: ignore[attr-defined]
    registered = system.admin.put(
        f"/api/merchants/acme/orders/{ORDER_REF}",
        json={
            "customer": {
                "name": "Ana Díaz",
                "email": "ana@example.com",
                "phone": "+14155550155",
                "locale": "es",
                "timezone": "UTC",
            },
            "notify": {"email": True, "sms": True},
        },
        headers=system.auth(),
    )
    assert registered.status_code in (200, 201), registered.get_json()
    return system


def check_promise(system: System, raw: bytes) -> None:
    response = system.post(system.merchant, raw)  # type: ignore[attr-defined]
    answer = response.get_json()
    assert response.status_code < 500, answer
    if response.status_code != 200:
        assert response.status_code == 400, answer
        assert answer["error"] == "bad_payload"
        assert answer["message"].strip(), "a 400 names the problem"
        assert run_queued(system) == 0, "nothing is queued for a refused body"
        return
    run_queued(system)  # raises on any failure the worker would retry
    if answer["status"] in ("queued", "ignored"):
        assert delivery_outcome(system, answer["event_id"]) in ("processed", "ignored")


SHARED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)


@SHARED
@given(raw=mutated_webhooks())
def test_every_body_the_receiver_accepts_is_processed(hostile_system: System, raw: bytes) -> None:
    check_promise(hostile_system, raw)


@settings(SHARED, max_examples=30)
@given(raw=any_json_body)
@example(raw=b'{"event": "track_updated", "data": ' + b"[" * 970 + b"]" * 970 + b"}")
@example(raw=b'{"event": "\\ud800", "data": {}}')
@example(raw=b'{"event": "track_updated", "data": {"n": ' + b"9" * 5000 + b"}}")
def test_arbitrary_json_is_never_a_5xx(hostile_system: System, raw: bytes) -> None:
    check_promise(hostile_system, raw)


# --------------------------------------------------------------------------- the reported examples, on a real worker


def reported_examples() -> list[tuple[str, bytes, int]]:
    """(what, body, expected status) for each case the review reproduced."""
    cases: list[tuple[str, bytes, int]] = []

    def track(what: str, status: int, *path_values: tuple[tuple[Any, ...], Any]) -> None:
        body = copy.deepcopy(sample("track_updated_transit.json"))
        body["data"]["metadata"] = ORDER_REF
        body["data"]["tracking_status"]["object_id"] = f"scan-{len(cases)}"  # each case its own event
        for path, value in path_values:
            put(body, path, value)
        cases.append((what, encode(body), status))

    ts = ("data", "tracking_status")
    track("lone surrogate in status_details", 200, ((*ts, "status_details"), "Left at \ud800 door"))
    track("NUL in status_details", 200, ((*ts, "status_details"), "Left\x00at door"))
    track("NUL in the location", 200, ((*ts, "location", "city"), "Pho\x00enix"))
    track(
        "location over 200",
        200,
        ((*ts, "location", "city"), "C" * 400),
        ((*ts, "location", "state"), "S" * 400),
    )
    track("substatus text over any column", 200, ((*ts, "substatus", "text"), "T" * 5000))
    track("order ref from metadata over 200", 200, (("data", "metadata"), "R" * 2000))
    track("tracking number over 128", 400, (("data", "tracking_number"), "9" * 129))
    track("carrier over 64", 400, (("data", "carrier"), "c" * 65))
    track("transaction id over 64", 400, (("data", "transaction"), "t" * 65))
    track("scan id over 64", 400, ((*ts, "object_id"), "s" * 65))
    track("substatus code over 64", 400, ((*ts, "substatus", "code"), "x" * 65))
    track("lone surrogate in an id", 400, ((*ts, "object_id"), "abc\ud800"))
    track("NUL in the tracking number", 400, (("data", "tracking_number"), "92055\x0001"))
    track("date near year 1 with an offset", 400, ((*ts, "status_date"), "0001-01-01T00:00:00+05:00"))
    track("date near year 9999 with an offset", 400, ((*ts, "status_date"), "9999-12-31T23:59:59-05:00"))
    track("a 5,000-digit integer", 400, ((*ts, "status_details"), "@@BIGINT@@"))
    track("JSON nested 970 levels", 400, (("data", "surprise"), "@@DEEP@@"))
    label = copy.deepcopy(sample("transaction_created.json"))
    label["data"]["object_id"] = "o" * 65
    cases.append(("transaction object_id over 64", encode(label), 400))
    return cases


def test_the_reported_bodies_are_refused_or_processed_by_a_real_worker(hostile_system: System) -> None:
    system = hostile_system
    accepted: list[str] = []
    for what, raw, expected in reported_examples():
        response = system.post(system.merchant, raw)  # type: ignore[attr-defined]
        assert response.status_code == expected, (what, response.get_json())
        if expected == 200:
            assert response.get_json()["status"] == "queued", what
            accepted.append(response.get_json()["event_id"])
        else:
            assert response.get_json()["message"], what
    assert accepted, "some reported bodies are accepted"
    system.start_worker()
    system.drain(timeout_ms=60_000)  # a failing message would sit in the delay queue: join times out
    for event_id in accepted:
        assert delivery_outcome(system, event_id) == "processed", event_id
    for queue in QUEUES:
        assert system.broker.client.zcard(f"parcelhook:{queue}.XQ") == 0, f"dead letters on {queue}"
    with system.database.read() as conn:
        details = conn.execute(sa.select(shipment_scans.c.details, shipment_scans.c.location)).all()
        sent = conn.execute(sa.select(sa.func.count()).select_from(notifications)).scalar()
    assert any("\ufffd" in d for d, _ in details), "a lone surrogate became U+FFFD"
    assert all("\x00" not in d and "\x00" not in loc and len(loc) <= 200 for d, loc in details)
    assert sent, "the registered customer was told"


def test_a_non_ascii_signature_is_a_401_not_a_crash(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url)
    merchant = system.create_merchant("acme", hmac_secrets=["s" * 32])
    now = int(time.time())
    for header in (
        f"t={now},v1=ü" + "0" * 63,
        f"t={now},v1=" + "é" * 64,
        "t=١٧٠٠٠٠٠٠٠٠,v1=" + "0" * 64,
        "t=" + "9" * 5000 + ",v1=00",
    ):
        response = system.post(
            merchant,
            json.dumps(sample("track_updated_transit.json")),
            headers={"Shippo-Auth-Signature": header},
        )
        assert response.status_code == 401, (header[:30], response.get_json())


def test_an_unstorable_slug_is_a_404_not_a_503(make_system: Callable[..., System], database_url: str) -> None:
    system = make_system(database_url)
    for slug in ("acme%00", "acme%0A", "%ED%A0%80", "a" * 300):
        response = system.web.post(
            f"/webhooks/shippo/{slug}?token=x", data=b"{}", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 404, (slug, response.get_json())
