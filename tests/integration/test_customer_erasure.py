"""``DELETE /api/merchants/<m>/customers?email=|phone=``: a customer's personal data is erased
from every table, nothing is sent to them again, and a second call changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from store import notifications as notification_store
from store.schema import deliveries, metadata, notifications, opt_outs, orders, outbox_messages
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis

JANE = {"name": "Jane Roe", "email": "jane@example.com", "phone": "+1 (415) 555-0155", "locale": "en"}
BOB = {"name": "Bob Poe", "email": "bob@example.com"}
#: What must not survive anywhere but the opt-out list: Jane's name, address and number.
JANES_DATA = (
    "jane roe",
    "jane@example.com",
    "+14155550155",
    "amFuZUBleGFtcGxlLmNvbQ",
)  # last: base64 in links


def _register(system: System, ref: str, customer: dict[str, Any], **notify: bool) -> None:
    response = system.admin.put(
        f"/api/merchants/acme/orders/{ref}",
        json={"customer": customer, "notify": {"email": True, "sms": False, **notify}},
        headers=system.auth(),
    )
    assert response.status_code in (200, 201), response.get_json()


def _two_customers(system: System) -> dict[str, Any]:
    """Jane's order 1001 (label + first scan: a shipped email in the outbox) and Bob's 1003."""
    merchant = system.create_merchant(order_ref_pattern=r"Order (\d+)", alert_email="ops@acme.example")
    _register(system, "1001", JANE)
    _register(system, "1003", BOB)
    system.start_worker()
    for body in (scenario("delivered")[0], scenario("delivered")[1], scenario("returned")[0]):
        system.post(merchant, body)
    system.drain()
    return merchant


def _everything(system: System, *, skip: tuple[str, ...] = ()) -> str:
    """Every value of every row of every table, as one lower-cased text."""
    parts = []
    with system.database.read() as conn:
        for table in metadata.sorted_tables:
            if table.name in skip:
                continue
            parts += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    return "\n".join(parts).lower()


def _erase(system: System, query: str) -> Any:
    return system.admin.delete(f"/api/merchants/acme/customers?{query}", headers=system.auth())


def test_erasing_a_customer_removes_them_from_every_table_and_nothing_reaches_them_again(
    system: System,
) -> None:
    merchant = _two_customers(system)
    before = _everything(system)
    assert all(data.lower() in before for data in JANES_DATA[:3])  # there was something to erase
    with system.database.read() as conn:
        bobs_bodies_before = sorted(
            r.body for r in conn.execute(sa.select(deliveries)) if "794644790138" in r.body
        )
        janes = (
            sa.select(sa.func.count())
            .select_from(notifications.join(orders, orders.c.id == notifications.c.order_id))
            .where(orders.c.ref == "1001")
        )
        janes_notifications = conn.execute(janes).scalar_one()

    response = _erase(system, "email=jane@EXAMPLE.com")  # the domain is case-insensitive

    assert response.status_code == 200, response.get_json()
    counts = response.get_json()
    assert counts["orders"] == 1 and counts["outbox"] == 1 and counts["opted_out"] is True
    assert counts["notifications"] == janes_notifications >= 1 and counts["deliveries"] == 2

    # gone from every table, but the opt-out that keeps her from being written to again
    after = _everything(system, skip=("opt_outs",))
    for data in JANES_DATA:
        assert data.lower() not in after, data
    with system.database.read() as conn:
        order = conn.execute(sa.select(orders).where(orders.c.ref == "1001")).one()
        bob = conn.execute(sa.select(orders).where(orders.c.ref == "1003")).one()
        bodies = [r.body for r in conn.execute(sa.select(deliveries).order_by(deliveries.c.id))]
        outbox = conn.execute(sa.select(outbox_messages)).all()
        stops = [(r.channel, r.address, r.source) for r in conn.execute(sa.select(opt_outs))]
    assert order.customer == {"locale": "en"} and order.status != ""
    assert bob.customer == BOB  # another customer is untouched
    assert sorted(bodies) == ["", "", *bobs_bodies_before]  # Jane's two webhooks, not Bob's
    assert [(m.to_address, m.text, m.subject, m.html) for m in outbox if m.to_address.startswith("j")] == [
        ("j***@example.com", "", None, None)
    ]
    assert stops == [("email", "jane@example.com", "erasure")]

    # the admin views still work and show the metadata
    view = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    assert view["customer"] == {"locale": "en"}
    assert {n["to"] for n in view["notifications"] if n["channel"] == "email"} == {"j***@example.com"}
    listed = system.admin.get("/api/outbox", headers=system.auth()).get_json()["messages"]
    assert sorted((m["to"], m["removed"], m["text"] is None) for m in listed) == [
        ("bob@example.com", None, False),
        ("j***@example.com", "erased on request", True),
    ]

    # a later webhook for her order: nothing is sent
    system.post(merchant, scenario("delivered")[-2])  # out for delivery
    system.drain()
    # … nor when the platform registers her again with the same address
    _register(system, "1001", JANE)
    system.post(merchant, scenario("delivered")[-1])  # delivered
    system.drain()
    with system.database.read() as conn:
        later = conn.execute(
            sa.select(notifications).where(
                notifications.c.order_id == order.id,
                notifications.c.audience == "customer",
                notifications.c.created_at > order.updated_at,
            )
        ).all()
        sent_to_jane = conn.execute(
            sa.select(sa.func.count())
            .select_from(outbox_messages)
            .where(sa.func.lower(outbox_messages.c.to_address) == "jane@example.com")
        ).scalar_one()
    assert later, "the later webhooks planned notifications"
    assert {n.status for n in later} == {"suppressed"}
    emails = {n.kind: n.error for n in later if n.channel == "email"}
    assert "out_for_delivery" in emails and "delivered" in emails, emails
    assert "opted out" in (emails["delivered"] or ""), emails
    assert sent_to_jane == 0


def test_erasure_is_idempotent(system: System) -> None:
    _two_customers(system)
    first = _erase(system, "email=jane@example.com")
    assert first.status_code == 200
    snapshot = _everything(system)
    second = _erase(system, "email=jane@example.com")
    assert second.status_code == 200
    assert second.get_json() == {
        "orders": 0,
        "notifications": 0,
        "outbox": 0,
        "deliveries": 0,
        "opted_out": True,
    }
    assert _everything(system) == snapshot


def test_erasing_by_phone_normalizes_it_and_opts_the_number_out_of_sms(system: System) -> None:
    _two_customers(system)
    response = _erase(system, "phone=%2B1%20415.555-0155")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["orders"] == 1
    after = _everything(system, skip=("opt_outs",))
    for data in JANES_DATA:
        assert data.lower() not in after, data
    with system.database.read() as conn:
        assert notification_store.is_opted_out(conn, 1, "sms", "+14155550155")
        assert not notification_store.is_opted_out(conn, 1, "email", "jane@example.com")


def test_a_notification_not_sent_yet_is_suppressed_by_the_erasure(system: System) -> None:
    """A queued send to the customer must never go out to the masked address."""
    _two_customers(system)
    with system.database.write() as conn:
        queued = notification_store.create(system.database, conn, notification_store.new_row(
            merchant_id=1, order_id=1, shipment_id=None, kind="delivered",
            channel="email", audience="customer", key="planted-queued", to_address="jane@example.com",
        ))  # fmt: skip
    assert queued is not None
    assert _erase(system, "email=jane@example.com").status_code == 200
    with system.database.read() as conn:
        row = notification_store.get(conn, queued)
    assert row is not None
    assert (row.status, row.to_address) == ("suppressed", "j***@example.com")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "email"),
        ("email=jane@example.com&phone=%2B14155550155", "phone"),
        ("email=not-an-address", "email"),
        ("email=jane@example.com%0A", "email"),
        ("phone=4155550155", "phone"),
        ("phone=%2B1415555015a", "phone"),
        ("email=a@example.com&email=b@example.com", "email"),
    ],
)
def test_a_bad_or_missing_identifier_is_a_422_naming_it(system: System, query: str, field: str) -> None:
    system.create_merchant()
    response = _erase(system, query)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "invalid" and field in body["fields"]


def test_an_unknown_merchant_is_a_404(system: System) -> None:
    response = system.admin.delete(
        "/api/merchants/nobody/customers?email=jane@example.com", headers=system.auth()
    )
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_erasure_needs_the_admin_token(system: System) -> None:
    system.create_merchant()
    assert system.admin.delete("/api/merchants/acme/customers?email=jane@example.com").status_code == 401
