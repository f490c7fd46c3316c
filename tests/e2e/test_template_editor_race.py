"""The /ops template editor in real Chromium: a template that answers late never overwrites the
selection made after it (the editor and its preview show the newer selection)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_dashboard import Running, browser, running  # noqa: F401 - fixtures
from tests.support.ops_browser import signed_in_ops_page

pytestmark = [pytest.mark.browser, pytest.mark.redis]

TEXTS = {
    "shipped": "SHIPPED-MARKER for order {{ order.ref }}",
    "delivered": "DELIVERED-MARKER for order {{ order.ref }}",
}


def test_a_late_template_response_never_overwrites_the_newer_selection(
    running: Running,  # noqa: F811 - fixtures
    browser: Any,  # noqa: F811 - fixtures
) -> None:
    from playwright.sync_api import Error as PlaywrightError

    system, admin_url = running.system, running.admin.url
    system.create_merchant("acme")
    for kind, text in TEXTS.items():
        r = system.admin.put(
            f"/api/merchants/acme/templates/{kind}/email?locale=en",
            json={"subject": kind.upper(), "text": text},
            headers=system.auth(),
        )
        assert r.status_code in (200, 201), r.get_json()

    page, errors = signed_in_ops_page(browser, admin_url, system.settings.admin_token or "")
    page.wait_for_function(
        "document.querySelector('#pv-text').textContent.includes('DELIVERED-MARKER')", timeout=10_000
    )

    held: list[Any] = []

    def hold_the_first_shipped_load(route: Any) -> None:
        request = route.request
        if request.method == "GET" and "/templates/shipped/email" in request.url and not held:
            held.append(route)  # answered only after the next selection has rendered
            return
        route.continue_()

    page.route("**/api/merchants/acme/templates/**", hold_the_first_shipped_load)
    with page.expect_request(lambda r: "/templates/shipped/email" in r.url and r.method == "GET"):
        page.select_option("#tpl-kind", "shipped")
    page.select_option("#tpl-kind", "delivered")
    page.wait_for_function(
        "document.querySelector('#tpl-text').value.startsWith('DELIVERED-MARKER')"
        " && document.querySelector('#tpl-preview-state').textContent.startsWith('sample data')"
        " && document.querySelector('#pv-text').textContent.startsWith('DELIVERED-MARKER')",
        timeout=10_000,
    )
    assert len(held) == 1, "the shipped template's answer is still held"

    try:
        held[0].continue_()  # the late answer for the older selection arrives now
    except PlaywrightError:
        pass  # the page already gave up on that request (aborted): nothing can arrive late
    page.wait_for_load_state("networkidle")  # the late answer and anything it would set off are done

    assert page.locator("#tpl-kind").input_value() == "delivered"
    assert page.locator("#tpl-text").input_value().startswith("DELIVERED-MARKER")
    assert page.locator("#tpl-subject").input_value() == "DELIVERED"
    assert page.locator("#pv-text").inner_text().startswith("DELIVERED-MARKER")
    assert errors == []
