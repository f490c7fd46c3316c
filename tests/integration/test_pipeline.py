"""Signed webhooks → queue → real worker → committed state, visible in the orders API; on Redis
and on RabbitMQ."""

from __future__ import annotations

import pytest

from tests.fixtures.shippo import SAMPLES, raw, scenario
from tests.integration.conftest import System, on_both_brokers

pytestmark = [pytest.mark.redis, on_both_brokers]


def test_a_signed_sample_is_queued_and_processed_by_a_real_worker(system: System) -> None:
    merchant, secret = system.signing_merchant()
    system.start_worker()
    system.register_order("1001")
    for body in scenario("delivered"):
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "queued"
    system.drain()
    order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    assert order["status"] == "delivered"
    [shipment] = order["shipments"]
    assert shipment["carrier"] == "usps"
    assert shipment["tracking_number"] == "9205590164917312751089"
    assert shipment["tracking_url"].startswith("https://tools.usps.com/")
    assert shipment["status"] == "delivered"
    assert shipment["exception"] is None
    assert [h["substatus"] for h in shipment["history"]][-1] == "delivered"
    assert shipment["timeline"], "every applied change is kept as the shipment's timeline"


def test_every_sample_is_processed_without_error(system: System) -> None:
    merchant = system.create_merchant()
    system.start_worker()
    for sample in SAMPLES:
        system.post(merchant, raw(sample))
    system.drain()
    from store.schema import deliveries

    with system.database.read() as conn:
        outcomes = {r.event_id: r.outcome for r in conn.execute(deliveries.select())}
    assert len(outcomes) == len(SAMPLES)
    assert set(outcomes.values()) <= {"processed", "ignored"}
    assert system.dead_letters("events") == 0


def test_what_the_customer_is_not_told_is_recorded_as_suppressed_with_the_reason(system: System) -> None:
    merchant = system.create_merchant(order_ref_pattern=r"Order (\d+)")
    system.admin.put(
        "/api/merchants/acme/orders/1001",
        headers=system.auth(),
        json={"customer": {"email": "jane@example.com"}, "notify": {"email": True, "sms": False}},
    )
    system.start_worker()
    for body in scenario("delivered")[:6]:  # label … out for delivery
        system.post(merchant, body)
        system.drain()
    order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    seen = {(n["kind"], n["channel"], n["status"], n["error"]) for n in order["notifications"]}
    assert ("shipped", "email", "sent", None) in seen
    assert (
        "in_transit",
        "email",
        "suppressed",
        "kind disabled for this channel (merchant notify settings)",
    ) in seen
    assert ("out_for_delivery", "email", "sent", None) in seen
    assert ("out_for_delivery", "sms", "suppressed", "no contact address for this channel") in seen
