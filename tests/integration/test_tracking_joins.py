"""How a Track finds its shipment: by ``data.transaction``, else by (carrier, tracking_number); and a
Track that arrives before its Transaction keeps its state while the Transaction adds what only it has."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis

PROVIDER_URL = "https://carrier.example/track?n=9205590164917312751089"
# not a USPS host, so customers get USPS's own page instead (notifiers.links.is_carrier_tracking_url)
USPS_PAGE = "https://tools.usps.com/go/TrackConfirmAction?tLabels=9205590164917312751089"


def _bodies(*, drop_transaction_link: bool = False) -> tuple[bytes, list[bytes]]:
    """The delivered scenario: (transaction_created, tracks), optionally with ``transaction: null``."""
    label, *tracks = scenario("delivered")
    data = json.loads(label)
    data["data"]["tracking_url_provider"] = PROVIDER_URL
    label = json.dumps(data).encode()
    if drop_transaction_link:
        unlinked = []
        for raw in tracks:
            body = json.loads(raw)
            body["data"]["transaction"] = None
            unlinked.append(json.dumps(body).encode())
        tracks = unlinked
    return label, tracks


def _send(system: System, merchant: dict[str, Any], secret: str, *bodies: bytes) -> None:
    for body in bodies:
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "queued"
    system.drain()


def _shipment_count(system: System) -> int:
    from store.schema import shipments

    with system.database.read() as conn:
        return len(conn.execute(shipments.select()).all())


@pytest.fixture()
def acme(system: System) -> tuple[dict[str, Any], str]:
    merchant, secret = system.signing_merchant()
    system.register_order("1001")
    system.start_worker()
    return merchant, secret


def test_a_track_without_transaction_joins_its_label_by_carrier_and_tracking_number(
    system: System, acme: tuple[dict[str, Any], str]
) -> None:
    merchant, secret = acme
    label, tracks = _bodies(drop_transaction_link=True)
    _send(system, merchant, secret, label)  # the label knows no carrier (rate is an id)
    _send(system, merchant, secret, tracks[0])
    _send(system, merchant, secret, *tracks[1:])
    assert _shipment_count(system) == 1
    order = system.order("1001")
    [shipment] = order["shipments"]
    assert (order["status"], shipment["status"], shipment["carrier"]) == ("delivered", "delivered", "usps")
    assert shipment["tracking_url"] == USPS_PAGE
    assert len(shipment["history"]) == 6


@pytest.mark.parametrize("linked", [True, False], ids=["track-names-transaction", "track-transaction-null"])
def test_a_track_before_its_transaction_keeps_its_state_and_gains_url_and_order(
    system: System, acme: tuple[dict[str, Any], str], linked: bool
) -> None:
    merchant, secret = acme
    label, tracks = _bodies(drop_transaction_link=not linked)
    _send(system, merchant, secret, *tracks)
    order = system.order("1001")
    assert order["shipments"] == [], "the tracks carry no metadata: no order to join yet"
    from store.schema import shipments

    with system.database.read() as conn:
        [row] = conn.execute(shipments.select()).all()
    assert (row.status, row.order_id) == ("delivered", None)

    _send(system, merchant, secret, label)  # Shippo's transaction webhook comes last
    assert _shipment_count(system) == 1, "the label found the tracked shipment"
    order = system.order("1001")
    [shipment] = order["shipments"]
    assert (order["status"], shipment["status"]) == ("delivered", "delivered"), "a late label never regresses"
    assert shipment["tracking_url"] == USPS_PAGE
    assert shipment["label_url"].startswith("https://deliver.goshippo.com/")
    assert not [c for c in shipment["timeline"] if (c["scan_id"] or "").startswith("label:")], (
        "the label is stale"
    )
    # the registered customer hears the current state once the shipment joins the order
    kinds = [n["kind"] for n in order["notifications"] if n["channel"] == "email"]
    assert kinds == ["delivered"], order["notifications"]
