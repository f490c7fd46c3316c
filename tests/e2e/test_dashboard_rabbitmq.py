"""The ops dashboard in a real headless Chromium on a RabbitMQ-backed system.

The same system as tests/e2e/test_dashboard.py (real HTTP servers, an in-process dramatiq
worker), with the broker on a virtual host of the session's RabbitMQ node and the admin app
reading it through RabbitMQ's management API. The browser sees the queues card show
RabbitMQ's own numbers -- events waiting while no worker runs, then drained; a message
dead-lettered -- exactly as ``GET /api/ops/queues`` states them, and requeues the dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.test_dashboard import CHROMIUM_ARGS, LiveServer, browser, cell, post_webhook, shot  # noqa: F401
from tests.fixtures.shippo import raw, scenario
from tests.integration.conftest import System
from tests.support.ops_browser import watched_page
from tests.support.polling import wait_until
from tests.support.rabbitmq import RabbitNode

pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.parametrize("broker_name", ["rabbitmq"], indirect=True),
]
FIELDS = ("ready", "delayed", "in_flight", "dead")


@pytest.fixture()
def running(
    make_system: Callable[..., System], sqlite_url: str, rabbitmq_service: RabbitNode, broker_name: str
) -> Iterator[dict[str, Any]]:
    from ingest.app import create_app as create_ingest

    system = make_system(sqlite_url, rabbitmq_management_url=rabbitmq_service.management_url)
    assert system.settings.broker_url.startswith("amqp://")
    admin = LiveServer(system.admin_app)
    # the receiver publishes through the system's broker, so System.drain counts its messages too
    web = LiveServer(create_ingest(system.settings, database=system.database, broker=system.dramatiq_broker))
    try:
        yield {"system": system, "admin": admin, "web": web}
    finally:
        web.stop()
        admin.stop()


def api_queues(system: System) -> dict[str, dict[str, Any]]:
    r = system.admin.get("/api/ops/queues", headers=system.auth())
    assert r.status_code == 200, r.get_json()
    return {q["name"]: q for q in r.get_json()["queues"]}


def page_shows(page: Any, queue: str, expected: dict[str, Any]) -> bool:
    return all(cell(page, queue, f) == str(expected[f]) for f in FIELDS)


def test_the_queues_card_shows_rabbitmqs_numbers(running: dict[str, Any], browser: Any) -> None:  # noqa: F811
    system: System = running["system"]
    acme = system.create_merchant("acme", order_ref_pattern=r"Order (\d+)")
    system.register_order("1001")

    page, errors = watched_page(browser)
    page.goto(f"{running['admin'].url}/ops")
    page.fill("#token", system.settings.admin_token or "")
    page.click("button[type=submit]")
    page.wait_for_url(f"{running['admin'].url}/ops")
    page.wait_for_function("document.querySelector('#updated').textContent.startsWith('updated')")

    # -- events posted while no worker runs wait on RabbitMQ's events queue
    answers = [post_webhook(running["web"].url, acme, body)["status"] for body in scenario("delivered")]
    queued = answers.count("queued")
    assert queued >= 3, answers
    wait_until(lambda: api_queues(system)["events"]["ready"] == queued, what="the events on RabbitMQ")
    expected = {"ready": queued, "delayed": 0, "in_flight": 0, "dead": 0}
    page.wait_for_function(
        f"document.querySelector('tr[data-queue=\"events\"] td[data-field=\"ready\"]').textContent === '{queued}'",
        timeout=15_000,
    )
    assert page_shows(page, "events", expected), [cell(page, "events", f) for f in FIELDS]
    assert cell(page, "events", "oldest_age_s").endswith(" s"), "the age of the head message, peeked"
    assert page_shows(page, "notifications", {f: 0 for f in FIELDS})
    shot(page, "rabbitmq-1-queued")

    # -- a worker drains them: the card goes back to zero, the worker shows up
    system.start_worker()
    system.drain()
    assert system.order("1001")["status"] == "delivered"
    page.wait_for_function(
        "document.querySelector('tr[data-queue=\"events\"] td[data-field=\"ready\"]').textContent === '0'",
        timeout=15_000,
    )
    wait_until(lambda: page_shows(page, "events", {f: 0 for f in FIELDS}), what="events back to zero")
    page.wait_for_function(
        "document.querySelector('#worker-count').textContent.startsWith('1 ')", timeout=15_000
    )

    # -- a message for an unknown merchant is dead-lettered: RabbitMQ's events.XQ, on the card
    from workers.actors import process_event

    received = datetime.now(UTC).isoformat()
    process_event.send_with_options(
        args=("ghost", "ev-ghost-1", received, raw("track_updated_transit.json").decode()), max_retries=0
    )
    system.drain()
    assert system.dead_letters("events") == 1
    wait_until(lambda: page_shows(page, "events", {**{f: 0 for f in FIELDS}, "dead": 1}), what="dead 1")
    assert api_queues(system)["events"]["dead"] == 1
    row = page.locator('#dlq-table tbody tr:has-text("ev-ghost-1")')
    row.wait_for(timeout=15_000)
    assert "ghost" in row.inner_text()
    shot(page, "rabbitmq-2-dead-letter")

    # -- requeued from the page once the merchant exists: processed, the card at zero again
    system.create_merchant("ghost")
    row.locator("input[type=checkbox]").check()
    page.click("#dlq-requeue")
    page.locator("#confirm-dialog").wait_for(state="visible")
    page.click("#confirm-ok")
    page.wait_for_selector("#dlq-result:has-text('Requeued 1')")
    wait_until(lambda: system.dead_letters("events") == 0 and api_queues(system)["events"]["ready"] == 0)
    wait_until(lambda: page_shows(page, "events", {f: 0 for f in FIELDS}), what="dead back to 0")
    assert errors == [], errors
    page.context.close()
