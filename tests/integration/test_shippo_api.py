"""parcelhook asking Shippo: a manual lookup, reconciliation, webhook registration, and what a
refused token does. Everything through the HTTP surface (admin API, receiver, /metrics) and the
CLI, against a real Shippo-compatible HTTP server (tests/support/shippo_server.py), real Redis,
a real dramatiq worker, and SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from store.database import utcnow
from tests.fixtures.shippo import scenario
from tests.integration.conftest import ENCRYPTION_KEY, System
from tests.integration.test_secrets_at_rest import stored_bytes
from tests.support.notify_harness import rows
from tests.support.shippo_server import ShippoServer

pytestmark = pytest.mark.redis

TOKEN = "shippo_test_" + "0123456789abcdef" * 2
NEW_TOKEN = "shippo_test_" + "fedcba9876543210" * 2
ALERTS = "ops@acme.example"
JANE = "jane@example.com"
EVENTS = {"transaction_created", "transaction_updated", "track_updated"}


@pytest.fixture()
def shippo() -> Iterator[ShippoServer]:
    with ShippoServer({TOKEN, NEW_TOKEN}) as server:
        yield server


@pytest.fixture()
def acme(make_system: Callable[..., System], database_url: str, shippo: ShippoServer) -> System:
    """A system pointed at the Shippo server, merchant ``acme`` with a Shippo token and an alert
    address, order 1001 registered for Jane, the worker running."""
    system = make_system(database_url, shippo_api_url=shippo.url)
    system.create_merchant(order_ref_pattern=r"Order (\d+)", alert_email=ALERTS, shippo_api_token=TOKEN)
    put = system.admin.put(
        "/api/merchants/acme/orders/1001", json={"customer": {"email": JANE}}, headers=system.auth()
    )
    assert put.status_code == 201, put.get_json()
    system.start_worker()
    return system


def _merchant(system: System) -> dict[str, Any]:
    got = system.admin.get("/api/merchants/acme", headers=system.auth())
    assert got.status_code == 200
    return dict(got.get_json())


def _deliver_all_but_last(system: System, name: str = "delivered") -> dict[str, Any]:
    """Shippo's webhooks of a lifetime, but the last (``delivered``) never arrives. Returns the
    Track of that lost webhook: what Shippo answers to a lookup."""
    merchant = _merchant(system)
    bodies = scenario(name)
    for body in bodies[:-1]:
        assert system.post(merchant, body).get_json()["status"] == "queued"
    system.drain()
    last = json.loads(bodies[-1])
    assert last["event"] == "track_updated" and last["data"]["tracking_status"]["status"] == "DELIVERED"
    return dict(last["data"])


def _delivered_emails(system: System) -> list[Any]:
    return [r for r in rows(system) if r.kind == "delivered" and r.channel == "email" and r.status == "sent"]


def _refresh(system: System, track: dict[str, Any]) -> Any:
    return system.admin.post(
        "/api/merchants/acme/shipments/refresh",
        json={"carrier": track["carrier"], "tracking_number": track["tracking_number"]},
        headers=system.auth(),
    )


# ---------------------------------------------------------------- the token: write-only, encrypted


def test_the_shippo_token_is_write_only_and_encrypted_at_rest(acme: System) -> None:
    shown = acme.admin.get("/api/merchants/acme", headers=acme.auth())
    assert shown.get_json()["shippo_api_token_set"] is True
    assert shown.get_json()["shippo_paused"] is False
    listed = acme.admin.get("/api/merchants", headers=acme.auth())
    assert TOKEN not in shown.get_data(as_text=True) + listed.get_data(as_text=True)
    assert TOKEN.encode() not in stored_bytes(acme.database)

    removed = acme.admin.put("/api/merchants/acme", json={"shippo_api_token": None}, headers=acme.auth())
    assert removed.status_code == 200 and removed.get_json()["shippo_api_token_set"] is False


@pytest.mark.parametrize(
    "value",
    [
        "shippo_prod_" + "a" * 32,
        "shippo_test_",
        "shippo_test_" + "a" * 32 + "\n",
        " shippo_test_" + "a" * 32,
        "shippo_test_" + "a" * 32 + "-x",
        42,
    ],
)
def test_a_malformed_shippo_token_is_a_422_that_does_not_echo_it(acme: System, value: Any) -> None:
    answer = acme.admin.put("/api/merchants/acme", json={"shippo_api_token": value}, headers=acme.auth())
    assert answer.status_code == 422
    assert set(answer.get_json()["fields"]) == {"shippo_api_token"}
    if isinstance(value, str) and len(value) > 13:
        assert value.strip() not in answer.get_data(as_text=True)
    assert _merchant(acme)["shippo_api_token_set"] is True  # the stored one is untouched


# ---------------------------------------------------------------- manual lookup


def test_a_lookup_recovers_a_delivered_that_never_came_as_a_webhook_and_tells_jane_once(
    acme: System, shippo: ShippoServer
) -> None:
    track = _deliver_all_but_last(acme)
    assert _delivered_emails(acme) == []
    shippo.set_track(track)

    answer = _refresh(acme, track)
    assert answer.status_code == 200, answer.get_json()
    shipment = answer.get_json()["shipment"]
    assert shipment["status"] == "delivered"
    assert shipment["tracking_number"] == track["tracking_number"]
    assert shipment["history"][-1]["status"] == "DELIVERED"
    acme.drain()
    assert [r.to for r in _delivered_emails(acme)] == [JANE]

    # the same status again: by lookup, then as the late webhook itself: no second effect
    assert _refresh(acme, track).status_code == 200
    late = acme.post(_merchant(acme), json.dumps({"event": "track_updated", "test": False, "data": track}))
    assert late.status_code == 200
    acme.drain()
    assert len(_delivered_emails(acme)) == 1
    order = acme.admin.get("/api/merchants/acme/orders/1001", headers=acme.auth()).get_json()
    assert order["status"] == "delivered"

    lookups = shippo.calls("GET", "/tracks/")
    assert [c.path for c in lookups] == [f"/tracks/usps/{track['tracking_number']}"] * 2
    assert {c.authorization for c in lookups} == {f"ShippoToken {TOKEN}"}


def test_a_lookup_without_a_token_is_409_and_calls_nothing(
    make_system: Callable[..., System], database_url: str, shippo: ShippoServer
) -> None:
    system = make_system(database_url, shippo_api_url=shippo.url)
    system.create_merchant()
    answer = system.admin.post(
        "/api/merchants/acme/shipments/refresh",
        json={"carrier": "usps", "tracking_number": "9205590164917312751089"},
        headers=system.auth(),
    )
    assert answer.status_code == 409
    assert answer.get_json()["error"] == "conflict" and "shippo_api_token" in answer.get_json()["message"]
    webhooks = system.admin.post("/api/merchants/acme/shippo/webhooks", headers=system.auth())
    assert webhooks.status_code == 409
    assert shippo.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"carrier": "usps"}, "tracking_number"),
        ({"tracking_number": "9205590164917312751089"}, "carrier"),
        ({"carrier": 7, "tracking_number": "9205590164917312751089"}, "carrier"),
        ({"carrier": "usps", "tracking_number": "92055901\n"}, "tracking_number"),
        ({"carrier": "usps", "tracking_number": "9" * 129}, "tracking_number"),
        ({"carrier": "usps", "tracking_number": "1", "extra": 1}, "extra"),
    ],
)
def test_a_bad_lookup_body_is_a_422_naming_the_field(
    acme: System, shippo: ShippoServer, body: dict[str, Any], field: str
) -> None:
    answer = acme.admin.post("/api/merchants/acme/shipments/refresh", json=body, headers=acme.auth())
    assert answer.status_code == 422
    assert field in answer.get_json()["fields"]
    assert shippo.requests == []


def test_shippo_failures_are_502s_naming_shippos_status_after_bounded_retries(
    acme: System, shippo: ShippoServer
) -> None:
    track = _deliver_all_but_last(acme)
    shippo.set_track(track)

    shippo.fail_next(503, times=3)
    answer = _refresh(acme, track)
    assert answer.status_code == 502
    assert answer.get_json()["error"] == "shippo_failed" and "503" in answer.get_json()["message"]
    assert len(shippo.calls("GET", "/tracks/")) == 3  # three attempts, then it gives up

    shippo.fail_next(429, retry_after="120")  # longer than a call may wait: no retry now
    assert _refresh(acme, track).status_code == 502
    assert len(shippo.calls("GET", "/tracks/")) == 4

    shippo.fail_next(429, retry_after="1")
    shippo.fail_next(500)
    assert _refresh(acme, track).status_code == 200  # waited, retried, and got it
    assert [c.status for c in shippo.calls("GET", "/tracks/")][4:] == [429, 500, 200]

    unknown = acme.admin.post(
        "/api/merchants/acme/shipments/refresh",
        json={"carrier": "usps", "tracking_number": "NOSUCHNUMBER"},
        headers=acme.auth(),
    )
    assert unknown.status_code == 502 and "404" in unknown.get_json()["message"]


# ---------------------------------------------------------------- reconciliation


def _reconcile(system: System, now: Any) -> None:
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile_with_shippo

    enqueue_followups(reconcile_with_shippo(system.runtime, now=now))
    system.drain()


def _metric(system: System, result: str) -> float:
    text = system.admin.get("/metrics", headers=system.auth()).get_data(as_text=True)
    prefix = f'parcelhook_shippo_reconcile_total{{result="{result}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, text
    return float(lines[0][len(prefix) :])


def test_reconciliation_recovers_a_lost_delivered_once_on_an_injected_clock(
    acme: System, shippo: ShippoServer
) -> None:
    track = _deliver_all_but_last(acme)
    shippo.set_track(track)
    now = utcnow()

    _reconcile(acme, now + timedelta(hours=11))  # not quiet for 12 h yet
    assert shippo.calls("GET", "/tracks/") == []

    _reconcile(acme, now + timedelta(hours=13))
    assert len(shippo.calls("GET", "/tracks/")) == 1
    assert [r.to for r in _delivered_emails(acme)] == [JANE]

    _reconcile(acme, now + timedelta(hours=13))  # twice: delivered is terminal, nothing to poll
    _reconcile(acme, now + timedelta(hours=40))
    assert len(shippo.calls("GET", "/tracks/")) == 1
    assert len(_delivered_emails(acme)) == 1
    assert (_metric(acme, "polled"), _metric(acme, "changed"), _metric(acme, "failed")) == (1, 1, 0)


def test_reconciliation_of_an_unchanged_shipment_is_idempotent_and_waits_before_asking_again(
    acme: System, shippo: ShippoServer
) -> None:
    _deliver_all_but_last(acme)
    bodies = [json.loads(b) for b in scenario("delivered")]
    shippo.set_track(bodies[-2]["data"])  # Shippo knows nothing newer than what we heard
    now = utcnow()

    _reconcile(acme, now + timedelta(hours=13))
    _reconcile(acme, now + timedelta(hours=13, minutes=5))  # looked up already: not again yet
    assert len(shippo.calls("GET", "/tracks/")) == 1
    _reconcile(acme, now + timedelta(hours=26))  # quiet for 12 h since the lookup: again
    assert len(shippo.calls("GET", "/tracks/")) == 2
    assert (_metric(acme, "polled"), _metric(acme, "changed")) == (2, 0)
    assert _delivered_emails(acme) == []
    order = acme.admin.get("/api/merchants/acme/orders/1001", headers=acme.auth()).get_json()
    assert order["shipments"][0]["status"] == "out_for_delivery"


def test_reconciliation_asks_at_most_the_rate_per_merchant_per_minute_oldest_first(
    make_system: Callable[..., System], database_url: str, shippo: ShippoServer
) -> None:
    system = make_system(database_url, shippo_api_url=shippo.url, shippo_rate_per_min=2)
    merchant = system.create_merchant(shippo_api_token=TOKEN)
    system.start_worker()
    numbers = []
    for name in ("delivered", "attempt-then-delivered", "returned"):  # three shipments, in this order
        first_track = json.loads(scenario(name)[1])
        assert system.post(merchant, json.dumps(first_track)).get_json()["status"] == "queued"
        system.drain()
        shippo.set_track(first_track["data"])
        numbers.append(first_track["data"]["tracking_number"])
    now = utcnow().replace(second=0, microsecond=0) + timedelta(hours=13)

    _reconcile(system, now)
    _reconcile(system, now + timedelta(seconds=30))  # the same minute: its two calls are used
    assert [c.path.rsplit("/", 1)[1] for c in shippo.calls("GET", "/tracks/")] == numbers[:2]
    _reconcile(system, now + timedelta(minutes=1))
    assert [c.path.rsplit("/", 1)[1] for c in shippo.calls("GET", "/tracks/")] == numbers


def test_a_failed_lookup_is_counted_and_changes_nothing(acme: System, shippo: ShippoServer) -> None:
    _deliver_all_but_last(acme)  # no Track set: Shippo answers 404
    _reconcile(acme, utcnow() + timedelta(hours=13))
    assert (_metric(acme, "polled"), _metric(acme, "changed"), _metric(acme, "failed")) == (0, 0, 1)


# ---------------------------------------------------------------- webhook registration


def _register(system: System) -> list[dict[str, str]]:
    answer = system.admin.post("/api/merchants/acme/shippo/webhooks", headers=system.auth())
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["webhooks"])


def test_registration_is_idempotent_and_follows_a_token_rotation(acme: System, shippo: ShippoServer) -> None:
    other = shippo.add_webhook("track_updated", "https://other.example/hooks")  # not ours: kept
    url = _merchant(acme)["webhook_url"]
    shippo.add_webhook("track_updated", url)  # registered by hand before: reused, not doubled
    shippo.add_webhook("track_updated", url)  # and a duplicate of it: removed

    first = _register(acme)
    assert {w["event"] for w in first} == EVENTS and {w["url"] for w in first} == {url}
    ours = {k: w for k, w in shippo.webhooks.items() if k != other}
    assert len(ours) == 3 and {w["url"] for w in ours.values()} == {url}
    assert all(w["is_test"] for w in ours.values())  # a shippo_test_ token registers test webhooks

    calls_before = len(shippo.requests)
    assert _register(acme) == first  # twice: 3 webhooks, not 6
    assert [c.method for c in shippo.requests[calls_before:]] == ["GET"]
    assert len(shippo.webhooks) == 4

    rotated = acme.admin.post("/api/merchants/acme/rotate-token", headers=acme.auth()).get_json()
    assert rotated["webhook_url"] != url
    after = _register(acme)
    assert {w["object_id"] for w in after} == {w["object_id"] for w in first}  # updated in place
    assert {w["url"] for w in after} == {rotated["webhook_url"]}
    assert {w["url"] for k, w in shippo.webhooks.items() if k != other} == {rotated["webhook_url"]}
    assert shippo.webhooks[other]["url"] == "https://other.example/hooks"
    assert len(shippo.webhooks) == 4


# ---------------------------------------------------------------- a refused token


def test_a_401_alerts_the_merchant_once_and_pauses_calls_until_the_token_changes(
    acme: System, shippo: ShippoServer
) -> None:
    track = _deliver_all_but_last(acme)
    shippo.set_track(track)
    shippo.tokens.discard(TOKEN)  # revoked in Shippo's dashboard

    answer = _refresh(acme, track)
    assert answer.status_code == 502 and "401" in answer.get_json()["message"]
    assert TOKEN not in answer.get_data(as_text=True)
    acme.drain()
    alerts = [r for r in rows(acme) if r.kind == "shippo_auth_failed"]
    assert [(a.to, a.status) for a in alerts] == [(ALERTS, "sent")]
    assert _merchant(acme)["shippo_paused"] is True
    calls = len(shippo.requests)

    # paused: no call at all, whatever asks
    paused = _refresh(acme, track)
    assert paused.status_code == 409 and "paused" in paused.get_json()["message"]
    assert acme.admin.post("/api/merchants/acme/shippo/webhooks", headers=acme.auth()).status_code == 409
    _reconcile(acme, utcnow() + timedelta(hours=13))
    acme.drain()
    assert len(shippo.requests) == calls
    assert len([r for r in rows(acme) if r.kind == "shippo_auth_failed"]) == 1  # once
    assert _delivered_emails(acme) == []

    # a new token: calls resume
    put = acme.admin.put("/api/merchants/acme", json={"shippo_api_token": NEW_TOKEN}, headers=acme.auth())
    assert put.get_json()["shippo_paused"] is False
    assert _refresh(acme, track).status_code == 200
    acme.drain()
    assert [r.to for r in _delivered_emails(acme)] == [JANE]
    assert shippo.requests[-1].authorization == f"ShippoToken {NEW_TOKEN}"


def test_a_401_during_reconciliation_alerts_once_and_pauses(acme: System, shippo: ShippoServer) -> None:
    track = _deliver_all_but_last(acme)
    shippo.set_track(track)
    shippo.tokens.clear()
    _reconcile(acme, utcnow() + timedelta(hours=13))
    _reconcile(acme, utcnow() + timedelta(hours=30))
    assert len(shippo.calls("GET", "/tracks/")) == 1
    assert len([r for r in rows(acme) if r.kind == "shippo_auth_failed"]) == 1
    assert _metric(acme, "failed") == 1


# ---------------------------------------------------------------- the CLI


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, acme: System, shippo: ShippoServer) -> System:
    for name, value in {
        "PARCELHOOK_DATABASE_URL": acme.settings.database_url,
        "PARCELHOOK_BROKER_URL": acme.settings.broker_url,
        "PARCELHOOK_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "PARCELHOOK_PUBLIC_URL": acme.settings.public_url,
        "PARCELHOOK_SHIPPO_API_URL": shippo.url,
        "PARCELHOOK_VAR_DIR": str(acme.settings.var_dir),
    }.items():
        monkeypatch.setenv(name, value)
    return acme


def _cli(*argv: str) -> tuple[int, str]:
    from admin.cli import main

    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_the_cli_refreshes_a_shipment_and_connects_shippo(
    cli_env: System, shippo: ShippoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    track = _deliver_all_but_last(cli_env)
    shippo.set_track(track)
    code, out = _cli("shipments", "refresh", "acme", track["carrier"], track["tracking_number"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out)["shipment"]["status"] == "delivered"
    cli_env.drain()
    assert len(_delivered_emails(cli_env)) == 1

    for _ in range(2):
        code, out = _cli("merchants", "connect-shippo", "acme")
        assert code == 0, capsys.readouterr().err
        assert {line.split()[0] for line in out.splitlines()} == EVENTS
    assert len(shippo.webhooks) == 3

    code, _ = _cli("shipments", "refresh", "acme", "usps", "NOSUCHNUMBER")
    assert code == 1 and "Shippo answered 404" in capsys.readouterr().err


def test_a_worker_without_the_encryption_keys_skips_reconciliation_with_a_warning(
    acme: System, shippo: ShippoServer, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from workers.runtime import Runtime
    from workers.shippo_reconcile import reconcile

    track = _deliver_all_but_last(acme)
    shippo.set_track(track)
    keyless = Runtime(replace(acme.settings, encryption_keys=()))
    found = reconcile(keyless, now=utcnow() + timedelta(hours=13))
    assert found.notification_ids == () and shippo.requests == []
    assert "PARCELHOOK_ENCRYPTION_KEYS" in caplog.text


# ---------------------------------------------------------------- one budget for every Shippo request


@pytest.fixture()
def thrifty(make_system: Callable[..., System], database_url: str, shippo: ShippoServer) -> System:
    """``acme`` with a budget of 2 Shippo requests per minute."""
    system = make_system(database_url, shippo_api_url=shippo.url, shippo_rate_per_min=2)
    system.create_merchant(order_ref_pattern=r"Order (\d+)", alert_email=ALERTS, shippo_api_token=TOKEN)
    system.start_worker()
    return system


def _refused_for_rate(answer: Any) -> None:
    assert answer.status_code == 429, answer.get_json()
    assert answer.get_json()["error"] == "rate_limited"
    assert "PARCELHOOK_SHIPPO_RATE_PER_MIN" in answer.get_json()["message"]
    assert 1 <= int(answer.headers["Retry-After"]) <= 60


def test_manual_lookups_spend_the_merchants_budget_of_requests_per_minute(
    thrifty: System, shippo: ShippoServer
) -> None:
    track = json.loads(scenario("delivered")[-1])["data"]
    shippo.set_track(track)
    if utcnow().second >= 55:  # three requests must fall in one clock minute
        import time

        time.sleep(61 - utcnow().second)
    assert _refresh(thrifty, track).status_code == 200
    assert _refresh(thrifty, track).status_code == 200
    _refused_for_rate(_refresh(thrifty, track))
    assert len(shippo.calls("GET", "/tracks/")) == 2, "the third request never left"


def test_a_retry_is_a_request_too(thrifty: System, shippo: ShippoServer) -> None:
    track = json.loads(scenario("delivered")[-1])["data"]
    shippo.set_track(track)
    if utcnow().second >= 55:
        import time

        time.sleep(61 - utcnow().second)
    shippo.fail_next(503, times=2)  # the first lookup's two requests are 503s: budget spent
    first = _refresh(thrifty, track)
    _refused_for_rate(first)  # its third attempt would have been the budget's third request
    assert [c.status for c in shippo.calls("GET", "/tracks/")] == [503, 503]


def test_webhook_registration_spends_the_same_budget(thrifty: System, shippo: ShippoServer) -> None:
    if utcnow().second >= 55:
        import time

        time.sleep(61 - utcnow().second)
    answer = thrifty.admin.post("/api/merchants/acme/shippo/webhooks", headers=thrifty.auth())
    _refused_for_rate(answer)  # a list and three creates need four requests
    assert len(shippo.requests) == 2
