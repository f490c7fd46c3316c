"""Orders with several shipments, and events that arrive before the platform registers the order."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis

TXN, TRACKING, META = "4bf5e5577e50c892821c556fe01a4da6", "9205590164917312751089", "Order 1001"


def relabel(body: bytes, n: int, ref: str) -> bytes:
    """The delivered scenario's body as label number ``n`` of order ``ref`` (own transaction, own number)."""
    text = body.decode().replace(TXN, f"{TXN[:-4]}{n:04d}").replace(TRACKING, f"{TRACKING[:-4]}{n:04d}")
    return text.replace(f'"{META}"', json.dumps(f"Order {ref}")).encode()


def test_two_labels_one_delivered_one_in_transit_make_the_order_partially_delivered(system: System) -> None:
    merchant, secret = system.signing_merchant()
    system.register_order("2001")
    system.start_worker()
    bodies = scenario("delivered")
    first = [relabel(b, 1, "2001") for b in bodies]  # label → … → delivered
    second = [relabel(b, 2, "2001") for b in bodies[:3]]  # label → pre-transit → accepted
    for body in first[:1] + second[:1]:
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "queued"
    system.drain()
    assert system.order("2001")["status"] == "shipped", "two labels, nothing moving yet"
    for body in second[1:]:
        system.post(merchant, body, secret=secret)
    system.drain()
    assert system.order("2001")["status"] == "partially_shipped", "one label moving, one not yet"
    for body in first[1:]:
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "queued"
    system.drain()

    order = system.order("2001")
    assert (order["status"], order["exception"]) == ("partially_delivered", None)
    assert sorted((s["tracking_number"][-4:], s["status"]) for s in order["shipments"]) == [
        ("0001", "delivered"),
        ("0002", "in_transit"),
    ]
    listed = system.admin.get(
        "/api/merchants/acme/orders?status=partially_delivered", headers=system.auth()
    ).get_json()["orders"]
    assert [o["ref"] for o in listed] == ["2001"]

    for body in [relabel(b, 2, "2001") for b in bodies[3:]]:  # the second one arrives too
        system.post(merchant, body, secret=secret)
    system.drain()
    assert system.order("2001")["status"] == "delivered"


def test_events_before_the_order_is_registered_are_kept_and_attached(system: System) -> None:
    merchant, secret = system.signing_merchant()
    system.start_worker()
    bodies = scenario("delivered")
    for body in [relabel(b, 1, "3001") for b in bodies] + [relabel(b, 2, "3001") for b in bodies[:4]]:
        system.post(merchant, body, secret=secret)
    system.drain()

    before = system.order("3001")
    assert before["registered"] is False and before["customer"] == {}
    assert before["status"] == "partially_delivered" and len(before["shipments"]) == 2
    assert before["notifications"] == [], "no customer contact yet: nothing to send"

    put = system.admin.put(
        "/api/merchants/acme/orders/3001",
        json={
            "customer": {"name": "Jane Doe", "email": "jane@example.com"},
            "notify": {"email": True, "sms": False},
        },
        headers=system.auth(),
    )
    assert put.status_code == 201, "first registration by the platform"
    system.drain()
    order = put.get_json()
    assert order["registered"] is True and order["status"] == "partially_delivered"
    assert sorted(s["status"] for s in order["shipments"]) == ["delivered", "in_transit"]
    assert all(s["history"] and s["timeline"] for s in order["shipments"])

    after = system.order("3001")
    kinds = sorted(n["kind"] for n in after["notifications"] if n["channel"] == "email")
    # two parcels, one delivered and one on the way: that parcel's delivery is partially_delivered
    assert "partially_delivered" in kinds, "the customer learns the current state once registered"
    assert "delivered" not in kinds, "the order is not wholly delivered yet"
    assert "in_transit" not in kinds, "never the stale steps in between"
    assert all(n["to"] == "j***@example.com" for n in after["notifications"])

    assert system.register_order("3001") == 200
    system.drain()
    assert len(system.order("3001")["notifications"]) == len(after["notifications"]), "nothing twice"


def test_an_order_registered_first_shows_awaiting_shipment(system: System) -> None:
    system.create_merchant()
    put = system.admin.put("/api/merchants/acme/orders/4001", json={}, headers=system.auth())
    assert put.status_code == 201
    assert (put.get_json()["status"], put.get_json()["shipments"]) == ("awaiting_shipment", [])
