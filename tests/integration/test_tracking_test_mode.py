"""Shippo test mode (``"test": true``): state moves as usual, customers hear nothing unless the
merchant's ``notify_test_events`` is on, merchant alerts say ``[TEST]``, and the shipment and the
webhook log show the event as test.

Every scenario runs twice in the same system: once as test-mode events for merchant ``acme``
(order 1003, Jane) and once as live events for merchant ``live`` (order 1003, Luis). The live twin
is the reference for "state updated as usual" and for which customer messages a real run sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.shippo import raw, scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h

pytestmark = pytest.mark.redis

JANE = {"email": "jane@example.com", "phone": "+15551230001"}
LUIS = {"email": "luis@example.com", "phone": "+15551230002"}
LIVE_ALERTS = "live-ops@acme.example"


def as_test_mode(body: bytes) -> bytes:
    """The same webhook as Shippo sends it in test mode (the flag on the body and on its data)."""
    parsed: dict[str, Any] = json.loads(body)
    parsed["test"] = True
    parsed["data"]["test"] = True
    return json.dumps(parsed).encode()


def _order(system: System, merchant: str) -> dict[str, Any]:
    response = system.admin.get(f"/api/merchants/{merchant}/orders/1003", headers=system.auth())
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def _shipment_state(order: dict[str, Any]) -> dict[str, Any]:
    [shipment] = order["shipments"]
    keep = ("carrier", "tracking_number", "status", "substatus", "exception", "eta", "last_scan_at")
    return {
        **{k: shipment[k] for k in keep},
        "history": shipment["history"],
    }


def _customer_kinds(order: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (n["channel"], n["kind"])
        for n in order["notifications"]
        if n["audience"] == "customer" and n["status"] == "sent"
    )


@pytest.mark.parametrize("notify_test_events", [False, True], ids=["default", "notify_test_events"])
def test_a_test_mode_scenario_updates_state_and_reaches_customers_only_when_the_merchant_allows_it(
    make_system: Callable[..., System], database_url: str, notify_test_events: bool
) -> None:
    with h.wired(make_system, database_url) as (system, smtp, twilio):
        profile = h.merchant_profile(**({"notify_test_events": True} if notify_test_events else {}))
        acme = system.create_merchant("acme", **profile)
        assert acme["notify_test_events"] is notify_test_events
        live = system.create_merchant("live", **h.merchant_profile(alert_email=LIVE_ALERTS))
        h.register_order(system, "1003", merchant="acme", email=JANE["email"], phone=JANE["phone"])
        h.register_order(system, "1003", merchant="live", email=LUIS["email"], phone=LUIS["phone"])
        system.start_worker()
        for body in scenario("returned"):
            assert system.post(acme, as_test_mode(body)).get_json()["status"] == "queued"
            assert system.post(live, body).get_json()["status"] == "queued"
            system.drain()

        test_order, live_order = _order(system, "acme"), _order(system, "live")
        assert _shipment_state(test_order) == _shipment_state(live_order), "state moves as usual"
        assert test_order["status"] == live_order["status"]
        assert [s["test"] for s in test_order["shipments"]] == [True]
        assert [s["test"] for s in live_order["shipments"]] == [False]

        to_jane = [m for m in smtp.messages if m.rcpt_tos == [JANE["email"]]]
        texts_to_jane = [m for m in twilio.messages if m["to"] == JANE["phone"]]
        live_kinds = _customer_kinds(live_order)
        assert live_kinds, "the live twin tells its customer: the comparison would prove nothing"
        if notify_test_events:
            assert _customer_kinds(test_order) == live_kinds
            assert len(to_jane) + len(texts_to_jane) == len(live_kinds)
        else:
            assert to_jane == [] and texts_to_jane == [], "a test webhook never reaches a real customer"
            customer_rows = [
                r
                for r in h.rows(system, policy_suppressed=True)
                if r.audience == "customer" and r.to in JANE.values()
            ]
            assert customer_rows and {(r.status, r.error) for r in customer_rows} == {
                ("suppressed", "test-mode event (merchant notify_test_events is off)")
            }

        test_alerts = [m for m in smtp.messages if m.rcpt_tos == [h.ALERTS]]
        live_alerts = [m for m in smtp.messages if m.rcpt_tos == [LIVE_ALERTS]]
        assert test_alerts and len(test_alerts) == len(live_alerts), "merchant alerts still go out"
        assert all(str(m.message["Subject"]).startswith("[TEST] ") for m in test_alerts)
        assert not any("[TEST]" in str(m.message["Subject"]) for m in live_alerts)


def test_the_webhook_log_marks_test_mode_deliveries(
    make_system: Callable[..., System], database_url: str
) -> None:
    system = make_system(database_url)
    acme = system.create_merchant("acme", **h.merchant_profile())
    live = system.create_merchant("live", **h.merchant_profile())
    assert system.post(acme, raw("track_updated_test_mode.json")).get_json()["status"] == "queued"
    assert system.post(acme, raw("track_updated_test_mode.json")).get_json()["status"] == "duplicate"
    assert system.post(live, raw("track_updated_transit.json")).get_json()["status"] == "queued"
    log = system.admin.get("/api/ops/webhooks", headers=system.auth()).get_json()["deliveries"]
    assert [(d["merchant"], d["outcome"], d["test"]) for d in log] == [
        ("live", "queued", False),
        ("acme", "duplicate", True),
        ("acme", "queued", True),
    ]


@pytest.mark.parametrize("value", ["true", 1, None, [], {"on": True}])
def test_notify_test_events_must_be_a_boolean(
    make_system: Callable[..., System], sqlite_url: str, value: object
) -> None:
    system = h.acme(make_system, sqlite_url)
    response = system.admin.put(
        "/api/merchants/acme", json={"notify_test_events": value}, headers=system.auth()
    )
    assert response.status_code == 422
    assert "notify_test_events" in response.get_json()["fields"]
    merchant = system.admin.get("/api/merchants/acme", headers=system.auth()).get_json()
    assert merchant["notify_test_events"] is False, "the default, unchanged"
    response = system.admin.put(
        "/api/merchants/acme", json={"notify_test_events": True}, headers=system.auth()
    )
    assert response.status_code == 200 and response.get_json()["notify_test_events"] is True
