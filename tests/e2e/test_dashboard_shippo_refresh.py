"""The /ops order view in real Chromium: "Refresh from Shippo" recovers a ``delivered`` Shippo
never sent as a webhook (from a Shippo-compatible server), shows it, and Jane gets one email,
however often the button is pressed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.test_dashboard import LiveServer, Worker, browser, post_webhook, shot  # noqa: F401 - fixtures
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support.notify_harness import rows
from tests.support.ops_browser import signed_in_ops_page
from tests.support.polling import wait_until
from tests.support.shippo_server import ShippoServer

pytestmark = [pytest.mark.browser, pytest.mark.redis]

TOKEN = "shippo_test_" + "0123456789abcdef" * 2


@pytest.fixture()
def shippo() -> Iterator[ShippoServer]:
    with ShippoServer({TOKEN}) as server:
        yield server


@pytest.fixture()
def live(
    make_system: Callable[..., System], sqlite_url: str, shippo: ShippoServer
) -> Iterator[dict[str, Any]]:
    from ingest.app import create_app as create_ingest

    system = make_system(sqlite_url, shippo_api_url=shippo.url)
    admin = LiveServer(system.admin_app)
    web = LiveServer(create_ingest(system.settings, database=system.database))
    worker = Worker(system.broker)
    worker.start()
    try:
        yield {"system": system, "admin": admin.url, "web": web.url}
    finally:
        worker.stop()
        web.stop()
        admin.stop()


def _delivered_emails(system: System) -> int:
    return sum(
        1 for r in rows(system) if r.kind == "delivered" and r.channel == "email" and r.status == "sent"
    )


def test_refresh_from_shippo_on_the_order_view_recovers_a_lost_delivered_once(
    live: dict[str, Any],
    browser: Any,  # noqa: F811 - fixture
    shippo: ShippoServer,
) -> None:
    system: System = live["system"]
    acme = system.create_merchant("acme", order_ref_pattern=r"Order (\d+)", shippo_api_token=TOKEN)
    system.admin.put(
        "/api/merchants/acme/orders/1001",
        json={"customer": {"email": "jane@example.com"}},
        headers=system.auth(),
    )
    bodies = scenario("delivered")
    for body in bodies[:-1]:  # the delivered webhook is lost
        assert post_webhook(live["web"], acme, body)["status"] == "queued"
    track = json.loads(bodies[-1])["data"]
    shippo.set_track(track)
    wait_until(lambda: any(r.kind == "out_for_delivery" for r in rows(system)), timeout=30)

    page, errors = signed_in_ops_page(browser, live["admin"], system.settings.admin_token or "", height=900)

    page.select_option("#order-merchant", "acme")
    page.fill("#order-ref", "1001")
    page.click("#order-show")
    status = page.locator("#order-shipments tbody tr .shipment-status")
    status.wait_for(timeout=10_000)
    assert status.inner_text() == "out_for_delivery"

    page.click("#order-shipments .shippo-refresh")
    page.wait_for_function(
        "document.querySelector('#order-shipments .shipment-status').textContent === 'delivered'",
        timeout=15_000,
    )
    assert "refreshed" in page.locator("#order-status").inner_text()
    shot(page, "shippo-refresh")
    wait_until(lambda: _delivered_emails(system) == 1, timeout=30)

    page.click("#order-shipments .shippo-refresh")  # again: the same status, no second effect
    page.wait_for_function(
        "document.querySelector('#order-status').textContent.startsWith('refreshed')"
        " && document.querySelectorAll('#order-shipments .shippo-refresh:not([disabled])').length === 1",
        timeout=15_000,
    )
    system.broker.join("notifications", timeout=30_000)
    assert _delivered_emails(system) == 1
    assert len(shippo.calls("GET", "/tracks/")) == 2
    assert errors == []
