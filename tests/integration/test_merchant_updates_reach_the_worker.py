"""The worker keeps a copy of each merchant (``store/merchant_cache.py``) and confirms it in
the transaction that uses it: a change made through the admin API applies to the very next
event and the very next send, in the same process, with the worker running all along."""

from __future__ import annotations

import pytest

from store import notifications as notification_store
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System, hmac_secret

pytestmark = pytest.mark.redis


def _sent(system: System) -> list[tuple[str, str]]:
    with system.database.read() as conn:
        captured = notification_store.outbox_list(conn, merchant_id=None, limit=50)
    return sorted((c["kind"], c["from"]) for c in captured)


def _label_sent(system: System, secret: str) -> tuple[dict[str, str], list[bytes]]:
    merchant = system.create_merchant(
        hmac_secrets=[secret], order_ref_pattern=r"Order (\d+)", email_from="first@acme.example"
    )
    system.start_worker()
    system.admin.put(
        "/api/merchants/acme/orders/1001",
        json={"customer": {"email": "jane@example.com"}},
        headers=system.auth(),
    )
    label, *scans = scenario("delivered")  # pre-transit, transits, delivered
    system.post(merchant, label, secret=secret)
    system.drain()
    assert _sent(system) == [("shipped", "first@acme.example")]  # the worker holds a copy now
    return merchant, scans


def test_a_new_sender_address_is_used_by_the_next_send(system: System) -> None:
    secret = hmac_secret()
    merchant, scans = _label_sent(system, secret)
    system.create_merchant(email_from="second@acme.example")
    for body in scans:
        system.post(merchant, body, secret=secret)
    system.drain()
    assert _sent(system) == [("delivered", "second@acme.example"), ("shipped", "first@acme.example")]


def test_a_kind_turned_off_is_not_planned_by_the_next_event(system: System) -> None:
    secret = hmac_secret()
    merchant, scans = _label_sent(system, secret)
    system.create_merchant(notify={"email": ["shipped"]})
    for body in scans:
        system.post(merchant, body, secret=secret)
    system.drain()
    assert _sent(system) == [("shipped", "first@acme.example")]
