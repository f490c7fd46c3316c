"""A two-parcel order through the HTTP surface (receiver → worker → outbox → orders API), on
SQLite and PostgreSQL: the customer hears `partially_delivered` when the first parcel arrives
and ONE `delivered`, listing both parcels, when the second does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from tests.integration.conftest import System
from tests.support.webhooks import label, track

JANE = "jane@example.com"
START = datetime(2026, 3, 3, 9, 0)
PARCELS = (("usps", "92050000000000000001", "a" * 32), ("ups", "1Z999AA10123456784", "b" * 32))


def _bodies(parcel: int) -> list[str]:
    carrier, tracking, txn = PARCELS[parcel]
    at = START + timedelta(days=parcel)
    return [
        label(txn, tracking, "1001", carrier=carrier),
        track(tracking, txn, f"{tracking}-t", at, carrier=carrier, metadata="Order 1001"),
        track(
            tracking,
            txn,
            f"{tracking}-d",
            at + timedelta(hours=20),
            "DELIVERED",
            "delivered",
            carrier=carrier,
            metadata="Order 1001",
        ),
    ]


def test_a_two_parcel_order_gets_one_partial_and_one_order_level_delivered(
    make_system: Callable[..., System], database_url: str
) -> None:
    system = make_system(database_url)
    merchant = system.create_merchant(order_ref_pattern=r"Order (\d+)")
    put = system.admin.put(
        "/api/merchants/acme/orders/1001", json={"customer": {"email": JANE}}, headers=system.auth()
    )
    assert put.status_code == 201, put.get_json()
    system.start_worker()
    first, second = _bodies(0), _bodies(1)
    for body in first[:2] + second[:2] + first[2:]:  # both labels and transit scans, then parcel 1 arrives
        assert system.post(merchant, body).get_json()["status"] == "queued"
        system.drain()
    for body in second[2:]:  # parcel 2 arrives: the order is complete
        assert system.post(merchant, body).get_json()["status"] == "queued"
        system.drain()

    order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    assert order["status"] == "delivered"
    sent = [(n["kind"], n["channel"]) for n in order["notifications"] if n["status"] == "sent"]
    assert sent.count(("partially_delivered", "email")) == 1
    assert sent.count(("delivered", "email")) == 1, order["notifications"]

    outbox = system.admin.get("/api/outbox?merchant=acme", headers=system.auth()).get_json()["messages"]
    [delivered] = [
        m for m in outbox if "delivered" in (m["subject"] or "").lower() and PARCELS[1][1] in m["text"]
    ]
    assert PARCELS[0][1] in delivered["text"] and PARCELS[1][1] in delivered["text"], "both parcels listed"
