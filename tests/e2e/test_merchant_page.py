"""The merchant page ``/m/<slug>`` in a real headless Chromium against a running system.

A merchant signs in with its own API key (another merchant's key is refused), sees its recent
orders with their shipments and exceptions and the notifications sent, edits a template with the
live preview shared with /ops, and cannot open another merchant's page. The admin token opens
any merchant's page. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_dashboard import ARTIFACTS, Running, browser, post_webhook, running  # noqa: F401 - fixtures
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support.json_values import json_object
from tests.support.ops_browser import watched_page

pytestmark = [pytest.mark.browser, pytest.mark.redis]


def _key(system: System, slug: str) -> str:
    response = system.admin.post(f"/api/merchants/{slug}/keys", json={"label": "e2e"}, headers=system.auth())
    assert response.status_code == 201, response.get_json()
    return str(json_object(response.get_json())["key"])


def test_a_merchant_signs_in_with_its_key_sees_its_orders_and_edits_a_template(
    running: Running,  # noqa: F811 - fixtures
    browser: Any,  # noqa: F811 - fixtures
) -> None:
    system, admin_url = running.system, running.admin.url
    acme = system.create_merchant("acme", order_ref_pattern=r"Order (\d+)")
    system.create_merchant("globex")
    for ref in ("1001", "1002"):
        system.register_order(ref, email=f"jane+{ref}@example.com")
    running.worker.start()
    attempt = scenario("attempt-then-delivered")[:5]  # ends with a delivery attempt: an open exception
    for body in scenario("delivered") + attempt:
        assert post_webhook(running.web.url, acme, body)["status"] in ("queued", "duplicate")
    for queue in ("events", "notifications", "events", "notifications"):
        system.broker.join(queue, timeout=30_000)
    acme_key, globex_key = _key(system, "acme"), _key(system, "globex")

    page, errors = watched_page(browser, height=900)

    # -- signed out, the page sends you to its sign-in form; another merchant's key is refused
    page.goto(f"{admin_url}/m/acme")
    assert page.url.endswith("/m/acme/login")
    page.fill("#key", globex_key)
    page.click("button[type=submit]")
    assert "not a key of this merchant" in page.locator("#login-error").inner_text()
    page.fill("#key", acme_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin_url}/m/acme")

    # -- recent orders with their shipments and exceptions, and the notifications sent
    page.wait_for_function("document.querySelector('#updated').textContent.startsWith('updated')")
    delivered = page.locator('#orders-table tr[data-order="1001"]')
    assert "delivered" in delivered.inner_text() and "9205590164917312751089" in delivered.inner_text()
    attempted = page.locator('#orders-table tr[data-order="1002"]')
    assert "delivery attempted" in attempted.inner_text() and "1Z999AA10123456784" in attempted.inner_text()
    notifications = page.locator("#notifications-table tbody").inner_text()
    assert "shipped" in notifications and "delivered" in notifications and "j***@example.com" in notifications
    page.screenshot(path=str(ARTIFACTS / "merchant-1-orders.png"), full_page=True)

    # -- the template editor (the /ops one): live preview while typing, then save
    page.locator("#templates").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelector('#tpl-preview-state').textContent.startsWith('sample data')"
    )
    with page.expect_response(lambda r: "/api/merchants/acme/templates/shipped/email" in r.url):
        page.select_option("#tpl-kind", "shipped")
    text = page.locator("#tpl-text")
    text.fill("Order {{ order.ref }} is on its way, from the merchant page.")
    page.wait_for_function(
        "document.querySelector('#pv-text').textContent.includes('from the merchant page')", timeout=10_000
    )
    page.click("#tpl-save")
    page.wait_for_selector("#tpl-status.ok", timeout=10_000)
    page.locator("#templates").screenshot(path=str(ARTIFACTS / "merchant-2-template-saved.png"))
    saved = system.admin.get("/api/merchants/acme/templates/shipped/email?locale=en", headers=system.auth())
    assert "from the merchant page" in saved.get_json()["text"]

    # -- the key's session reaches neither another merchant nor the ops dashboard
    assert page.goto(f"{admin_url}/m/globex").status == 404
    assert page.goto(f"{admin_url}/api/merchants/globex/orders").status == 404
    assert page.goto(f"{admin_url}/api/ops/summary").status == 403
    assert errors == [], errors
    page.context.close()

    # -- the admin token opens any merchant's page
    admin_context = browser.new_context()
    admin_page = admin_context.new_page()
    admin_page.goto(f"{admin_url}/m/globex/login")
    admin_page.fill("#key", system.settings.admin_token or "")
    admin_page.click("button[type=submit]")
    admin_page.wait_for_url(f"{admin_url}/m/globex")
    admin_page.wait_for_selector("#orders-table tr.empty:has-text('No orders yet.')", timeout=10_000)
    assert admin_page.goto(f"{admin_url}/m/acme").status == 200
    admin_context.close()
