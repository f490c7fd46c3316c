"""The dashboard's server side: sign-in, the page, CSRF on cookie sessions, the summary."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis


def sign_in(system: System) -> str:
    response = system.admin.post("/ops/login", data={"token": system.settings.admin_token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/ops")
    page = system.admin.get("/ops")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.get_data(as_text=True))
    assert match, "the page carries its CSRF token"
    return match.group(1)


def test_the_dashboard_needs_a_sign_in_and_a_wrong_token_is_refused(system: System) -> None:
    assert system.admin.get("/ops").headers["Location"].endswith("/ops/login")
    form = system.admin.get("/ops/login")
    assert form.status_code == 200 and b'name="token"' in form.data
    wrong = system.admin.post("/ops/login", data={"token": "nope"})
    assert wrong.status_code == 401 and b"not the admin token" in wrong.data
    assert system.admin.get("/static/ops/ops.css").status_code == 200, "the sign-in page has its styles"


def test_cookie_sessions_need_the_csrf_header_to_change_anything(system: System) -> None:
    csrf = sign_in(system)
    body = {"queue": "events", "all": True}
    assert system.admin.post("/api/ops/dead-letters/purge", json=body).status_code == 403
    ok = system.admin.post("/api/ops/dead-letters/purge", json=body, headers={"X-Parcelhook-CSRF": csrf})
    assert ok.status_code == 200
    assert system.admin.post("/ops/logout", headers={"X-Parcelhook-CSRF": csrf}).status_code == 200
    assert system.admin.get("/ops").status_code == 302


def test_the_summary_shows_exceptions_by_merchant_outcomes_outbox_and_alerts(system: System) -> None:
    merchant = system.create_merchant("acme", order_ref_pattern=r"Order (\d+)")
    # the order of the "attempt-then-delivered" scenario, so that its emails land in the outbox
    system.admin.put(
        "/api/merchants/acme/orders/1002",
        json={"customer": {"email": "jane@example.com"}},
        headers=system.auth(),
    )
    system.start_worker()
    for body in scenario("attempt-then-delivered")[:3] + scenario("returned"):
        system.post(merchant, body)
        system.drain()  # one at a time: the outcome must not depend on thread scheduling
    summary = system.admin.get("/api/ops/summary", headers=system.auth()).get_json()
    assert set(summary) >= {"exceptions", "notifications_24h", "outbox", "health", "merchants"}
    assert summary["merchants"] == ["acme"]
    assert summary["exceptions"], summary
    for entry in summary["exceptions"]:
        assert entry["merchant"] == "acme" and entry["total"] == sum(c["count"] for c in entry["classes"])
    assert summary["notifications_24h"], summary
    assert all(set(r) == {"channel", "status", "count"} for r in summary["notifications_24h"])
    assert summary["outbox"] and summary["outbox"][0]["merchant"] == "acme", summary["outbox"]
    assert isinstance(summary["health"]["alerts"], list)
    assert "last_check" in summary["health"] and "mail" in summary["health"]
