"""The three sample shipment lifetimes, replayed through the real receiver, Redis and a real worker,
on each database: in order, shuffled, and duplicated. The orders API shows the same end state."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.shippo import SCENARIOS, scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis


def _bodies(mode: str) -> list[bytes]:
    bodies = [body for name in SCENARIOS for body in scenario(name)]
    if mode == "in-order":
        return bodies
    kind, seed = mode.rsplit("-", 1)
    if kind == "duplicated":
        bodies = bodies * 2 + bodies[::3]
    random.Random(int(seed)).shuffle(bodies)
    return bodies


def _kinds(timeline: list[dict[str, Any]], kind: str, exception: str | None = None) -> list[dict[str, Any]]:
    return [c for c in timeline if c["kind"] == kind and (exception is None or c["exception"] == exception)]


@pytest.mark.parametrize(
    "mode", ["in-order", "shuffled-1", "shuffled-7", "shuffled-2024", "duplicated-3", "duplicated-11"]
)
def test_sample_scenarios_end_in_the_same_state_whatever_the_delivery_order(
    system: System, mode: str
) -> None:
    merchant, secret = system.signing_merchant()
    # one order registered before Shippo speaks, one after, one never
    assert system.register_order("1001") == 201
    system.start_worker()

    bodies = _bodies(mode)
    answers = Counter(system.post(merchant, body, secret=secret).get_json()["status"] for body in bodies)
    unique = len(set(bodies))
    assert answers == (
        {"queued": unique, "duplicate": len(bodies) - unique} if len(bodies) > unique else {"queued": unique}
    )
    system.drain()
    assert (
        system.admin.put(
            "/api/merchants/acme/orders/1002",
            json={"customer": {"phone": "+14155550123"}, "notify": {"sms": True}},
            headers=system.auth(),
        ).status_code
        == 201
    )

    delivered = system.order("1001")
    assert (delivered["status"], delivered["exception"], delivered["registered"]) == ("delivered", None, True)
    [shipment] = delivered["shipments"]
    assert (shipment["status"], shipment["exception"], shipment["carrier"]) == ("delivered", None, "usps")
    assert shipment["tracking_url"].startswith("https://tools.usps.com/")
    assert len(shipment["history"]) == 6, "every scan once, duplicates and full histories notwithstanding"
    assert [c["to_status"] for c in _kinds(shipment["timeline"], "status_changed")][-1] == "delivered"
    assert not _kinds(shipment["timeline"], "exception_opened")

    attempt = system.order("1002")
    assert (attempt["status"], attempt["exception"]) == ("delivered", None)
    [shipment] = attempt["shipments"]
    assert (shipment["status"], shipment["exception"], shipment["carrier"]) == ("delivered", None, "ups")
    opened = _kinds(shipment["timeline"], "exception_opened", "delivery_attempted")
    cleared = _kinds(shipment["timeline"], "exception_cleared", "delivery_attempted")
    assert len(opened) == 1 and len(cleared) == 1, shipment["timeline"]
    assert opened[0]["at"] < cleared[0]["at"]
    assert opened[0]["occurrence"] == cleared[0]["occurrence"]
    assert len(shipment["history"]) == 6

    returned = system.order("1003")
    assert (returned["status"], returned["exception"], returned["registered"]) == (
        "returned",
        "returned_to_sender",
        False,
    )
    [shipment] = returned["shipments"]
    assert shipment["status"] == "returning", "return_to_sender: on its way back (domain/normalization.py)"
    assert shipment["exception"]["class"] == "returned_to_sender"
    assert shipment["exception"]["since"].startswith("2026-03-04T03:04:00")
    assert len(_kinds(shipment["timeline"], "exception_opened", "returned_to_sender")) == 1
    # the address issue on the way was opened once and closed by the return
    assert len(_kinds(shipment["timeline"], "exception_opened", "address_issue")) == 1
    assert len(_kinds(shipment["timeline"], "exception_cleared", "address_issue")) == 1
    assert len(shipment["history"]) == 4

    listed = system.admin.get("/api/merchants/acme/orders?status=delivered", headers=system.auth()).get_json()
    assert sorted(o["ref"] for o in listed["orders"]) == ["1001", "1002"]
    listed = system.admin.get(
        "/api/merchants/acme/orders?exception=returned_to_sender", headers=system.auth()
    ).get_json()
    assert [o["ref"] for o in listed["orders"]] == ["1003"]
    # nothing left behind on the queues, nothing dead-lettered
    assert system.broker.client.zcard("parcelhook:events.XQ") == 0


def test_every_shipment_notification_goes_out_once_even_when_duplicated(system: System) -> None:
    merchant, secret = system.signing_merchant()
    system.register_order("1001")
    system.start_worker()
    bodies = _bodies("duplicated-5")
    for body in bodies:
        system.post(merchant, body, secret=secret)
    system.drain()
    order = system.order("1001")
    kinds = Counter((n["kind"], n["channel"]) for n in order["notifications"])
    assert kinds, (order["notifications"], order["shipments"][0]["timeline"])
    assert set(kinds.values()) == {1}, kinds
