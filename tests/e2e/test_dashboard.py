"""The ops dashboard in a real headless Chromium against a running system.

Receiver and admin app are real HTTP servers (werkzeug, threaded), the broker is the
test Redis, the worker is an in-process dramatiq worker we start and stop. The
browser signs in with the admin token, watches queue numbers move as Shippo events
are replayed, requeues a dead letter and sees it processed once, and edits a
template with a live preview. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.shippo import raw, scenario
from tests.integration.conftest import System
from tests.support.json_values import json_object
from tests.support.ops_browser import watched_page
from tests.support.polling import wait_until
from tests.support.services import missing

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Worker:
    """An in-process dramatiq worker we can stop (events pile up) and start again."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.worker: Any = None

    def start(self) -> None:
        import dramatiq

        self.worker = dramatiq.Worker(self.broker, worker_timeout=50, worker_threads=2)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


@pytest.fixture()
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing("chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (the Python package)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass(frozen=True)
class Running:
    """A system served for real: the admin app and the receiver over HTTP, and a worker that
    tests start (and stop)."""

    system: System
    admin: LiveServer
    web: LiveServer
    worker: Worker


@pytest.fixture()
def running(make_system: Callable[..., System], sqlite_url: str) -> Iterator[Running]:
    from ingest.app import create_app as create_ingest

    system = make_system(sqlite_url)
    admin = LiveServer(system.admin_app)
    web = LiveServer(create_ingest(system.settings, database=system.database))
    worker = Worker(system.broker)
    try:
        yield Running(system, admin, web, worker)
    finally:
        worker.stop()
        web.stop()
        admin.stop()


def post_webhook(web_url: str, merchant: dict[str, Any], body: bytes) -> dict[str, Any]:
    import json

    req = urllib.request.Request(
        f"{web_url}/webhooks/shippo/{merchant['slug']}?token={merchant['webhook_token']}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json_object(json.loads(response.read()))


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """The whole page (from the top, so the sticky header sits where a reader expects it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=full_page)


def cell(page: Any, queue: str, field: str) -> str:
    return str(page.locator(f'tr[data-queue="{queue}"] td[data-field="{field}"]').inner_text()).strip()


def deliveries_for(system: System, slug: str) -> list[str]:
    from store.schema import deliveries, merchants

    with system.database.read() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.event_id, deliveries.c.outcome)
            .join(merchants, merchants.c.id == deliveries.c.merchant_id)
            .where(merchants.c.slug == slug)
        ).all()
    return [r.event_id for r in rows]


def test_dashboard_watches_queues_requeues_a_dead_letter_and_edits_a_template(
    running: Running, browser: Any
) -> None:
    system, worker = running.system, running.worker
    admin_url, web_url = running.admin.url, running.web.url
    acme = system.create_merchant("acme", order_ref_pattern=r"Order (\d+)")
    system.admin.put(
        "/api/merchants/acme/orders/1001",
        json={"customer": {"email": "jane@example.com", "name": "Jane"}},
        headers=system.auth(),
    )

    page, errors = watched_page(browser)

    # -- sign in: unauthenticated /ops goes to the login form; a wrong token is refused
    page.goto(f"{admin_url}/ops")
    assert page.url.endswith("/ops/login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert "not the admin token" in page.locator("#login-error").inner_text()
    page.fill("#token", system.settings.admin_token or "")
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin_url}/ops")
    page.wait_for_function("document.querySelector('#updated').textContent.startsWith('updated')")

    # -- events replayed while no worker runs: the page shows them waiting
    bodies = scenario("delivered") + scenario("attempt-then-delivered")
    for body in bodies:
        assert post_webhook(web_url, acme, body)["status"] in ("queued", "duplicate")
    page.wait_for_function(
        'Number(document.querySelector(\'tr[data-queue="events"] td[data-field="ready"]\').textContent) > 0',
        timeout=10_000,
    )
    assert int(cell(page, "events", "ready")) > 0
    page.wait_for_selector("#wh-table tbody tr td:has-text('acme')", timeout=10_000)
    shot(page, "1-queued")

    # -- start the worker: the numbers go back to zero
    worker.start()
    page.wait_for_function(
        "document.querySelector('tr[data-queue=\"events\"] td[data-field=\"ready\"]').textContent === '0'",
        timeout=30_000,
    )
    system.broker.join("events", timeout=30_000)
    assert page.locator('tr[data-queue="events"] svg polyline').count() == 1
    system.broker.join("notifications", timeout=30_000)
    # the delivered order's customer email was captured in the outbox and is previewed, sandboxed
    page.wait_for_selector("#outbox-list article.msg", timeout=15_000)
    assert page.locator("#outbox-list article.msg").first.inner_text().startswith("acme · ")
    assert page.locator("#outbox-list iframe").first.get_attribute("sandbox") == ""
    rendered = page.frame_locator("#outbox-list iframe").first.locator("body")
    assert "Acme Inc" in rendered.inner_text(timeout=10_000), "the captured HTML is rendered in the page"
    page.wait_for_selector("#notif-table tbody tr th:has-text('email')", timeout=15_000)
    shot(page, "2-drained")

    # -- a message for an unknown merchant fails permanently and is dead-lettered
    from workers.actors import process_event

    received = datetime.now(UTC).isoformat()
    process_event.send_with_options(
        args=("ghost", "ev-ghost-1", received, raw("track_updated_transit.json").decode()), max_retries=0
    )
    wait_until(lambda: system.broker.client.zcard("parcelhook:events.XQ") == 1, what="dead-lettered")
    row = page.locator('#dlq-table tbody tr:has-text("ev-ghost-1")')
    row.wait_for(timeout=15_000)
    assert "ghost" in row.inner_text()
    assert "NotFound" in row.inner_text() or "unknown merchant" in row.inner_text()
    assert page.locator('tr[data-queue="events"] td[data-field="dead"]').inner_text().strip() == "1"

    # the operator fixes the cause (creates the merchant), then requeues from the UI with a confirmation
    system.create_merchant("ghost")
    assert deliveries_for(system, "ghost") == []
    row.locator("input[type=checkbox]").check()
    page.click("#dlq-requeue")
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for(state="visible")
    assert "Requeue 1 message" in dialog.inner_text()
    shot(page, "3-confirm-requeue")
    page.click("#confirm-ok")
    page.wait_for_selector("#dlq-result:has-text('Requeued 1')")
    page.wait_for_selector("#dlq-table tbody tr.empty", timeout=15_000)
    system.broker.join("events", timeout=30_000)
    wait_until(lambda: deliveries_for(system, "ghost") == ["ev-ghost-1"], what="requeued event processed")
    time.sleep(0.5)
    assert deliveries_for(system, "ghost") == ["ev-ghost-1"], "processed exactly once"
    assert system.broker.client.zcard("parcelhook:events.XQ") == 0

    # -- template editor: load, live preview while typing, save, a syntax error names its line
    page.locator("#templates").scroll_into_view_if_needed()
    page.select_option("#tpl-merchant", "acme")
    page.select_option("#tpl-kind", "shipped")
    with page.expect_response(lambda r: "/templates/delivered/email" in r.url and r.request.method == "GET"):
        page.select_option("#tpl-kind", "delivered")
    page.wait_for_function(
        "document.querySelector('#tpl-preview-state').textContent.startsWith('sample data')"
    )
    assert page.locator("#tpl-source").inner_text().startswith("built-in default")
    text = page.locator("#tpl-text")
    text.fill("Hi {{ customer.first_name }}, order {{ order.ref }} arrived.\n")
    text.press("End")
    text.type("Thanks from the e2e test!")
    page.wait_for_function(
        "document.querySelector('#pv-text').textContent.includes('Thanks from the e2e test!')", timeout=10_000
    )
    assert page.locator("#pv-text").inner_text().startswith("Hi Jane, order 1042 arrived.")
    assert page.locator("#pv-html").get_attribute("sandbox") == ""
    assert "Your order was delivered" in page.frame_locator("#pv-html").locator("body").inner_text()
    page.click("#tpl-save")
    page.wait_for_selector("#tpl-status.ok", timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#templates").screenshot(path=str(ARTIFACTS / "dashboard-4-template-saved.png"))
    saved = system.admin.get("/api/merchants/acme/templates/delivered/email?locale=en", headers=system.auth())
    assert saved.get_json()["source"] == "merchant"
    assert "Thanks from the e2e test!" in saved.get_json()["text"]

    text.fill("Line one\nLine two {% if %}\n")
    page.wait_for_selector("#tpl-errors li", timeout=10_000)
    page.click("#tpl-save")
    page.wait_for_selector("#tpl-status.bad", timeout=10_000)
    message = page.locator("#tpl-errors").inner_text()
    assert re.search(r"line 2", message), message
    page.locator("#templates").screenshot(path=str(ARTIFACTS / "dashboard-5-template-error.png"))
    still = system.admin.get("/api/merchants/acme/templates/delivered/email?locale=en", headers=system.auth())
    assert "Thanks from the e2e test!" in still.get_json()["text"], "an invalid template is never saved"

    # -- the whole page at laptop size, for people to look at
    shot(page, "6-laptop-viewport", full_page=False)
    shot(page, "7-full-page")
    assert errors == [], errors
    page.context.close()


def test_chromium_is_where_make_test_puts_it() -> None:
    if not shutil.which("chromium") and not os.path.exists(CHROMIUM):
        missing("chromium (/usr/bin/chromium)")
    assert os.access(CHROMIUM, os.X_OK)
