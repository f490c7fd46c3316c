"""Retention: raw webhook bodies and rendered messages are removed once past their retention
(``PARCELHOOK_RETAIN_BODIES_DAYS`` / ``PARCELHOOK_RETAIN_MESSAGES_DAYS``), in bounded batches,
keeping the rows' metadata; the admin views say so instead of failing (``store/retention.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import deliveries as delivery_store
from store import merchants as merchant_store
from store import notifications as notification_store
from store import retention
from store.database import Database
from store.schema import deliveries, notifications, outbox_messages
from tests.fixtures.shippo import scenario
from tests.integration.conftest import VAULT, System
from tests.support.scenes import label_shipped_to_jane

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
BODIES_DAYS, MESSAGES_DAYS = 30, 90

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

#: Ages around a cutoff: mostly within a few seconds of it (the boundary itself included),
#: sometimes days away on either side.
OFFSETS = st.one_of(
    st.integers(min_value=-3, max_value=3).map(lambda s: timedelta(seconds=s)),
    st.integers(min_value=-5 * 86_400, max_value=5 * 86_400).map(lambda s: timedelta(seconds=s)),
    st.just(timedelta(microseconds=1)),
    st.just(-timedelta(microseconds=1)),
)

FULL_NOTIFICATION = {"subject": "Your order shipped", "body_text": "Hi Jane", "body_html": "<p>Hi Jane</p>"}
FULL_OUTBOX = {
    "subject": "Your order shipped",
    "text": "Hi Jane",
    "html": "<p>Hi Jane</p>",
    "headers": {"List-Unsubscribe": "<https://x.example/u/amFuZQ.sig>"},
}


class Planted:
    """One merchant with one delivery, one customer notification and its outbox message, and one
    merchant alert, written through the store; :meth:`refill` puts their content back."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.write() as conn:
            merchant, _ = merchant_store.upsert(conn, "acme", vault=VAULT, name="Acme", profile={})
            self.merchant_id = merchant.id
            delivery_store.record(
                db,
                conn,
                merchant_id=merchant.id,
                event_id="trk:1",
                event="track_updated",
                received_at=NOW,
                processed_at=NOW,
                outcome="processed",
                body='{"data": {"address_to": {"city": "Spotsylvania"}}}',
            )
            customer = notification_store.create(db, conn, notification_store.new_row(
                merchant_id=merchant.id, order_id=None, shipment_id=None, kind="shipped",
                channel="email", audience="customer", key="n-customer", to_address="jane@example.com",
            ))  # fmt: skip
            alert = notification_store.create(db, conn, notification_store.new_row(
                merchant_id=merchant.id, order_id=None, shipment_id=None, kind="notification_failed",
                channel="email", audience="merchant", key="n-alert", to_address="ops@acme.example",
                context={"alert": {"detail": "The shipped sms to +1415*****55 could not be sent."}},
            ))  # fmt: skip
            assert customer is not None and alert is not None
            self.customer, self.alert = customer, alert
            notification_store.outbox_capture(
                db, conn, notification_id=customer, merchant_id=merchant.id, channel="email",
                to_address="jane@example.com", sender="shipping@acme.example", **FULL_OUTBOX,
            )  # fmt: skip

    def refill(self, *, body_age: timedelta, message_age: timedelta) -> None:
        with self.db.write() as conn:
            conn.execute(
                deliveries.update().values(body='{"data": {"address_to": {}}}', received_at=NOW - body_age)
            )
            conn.execute(notifications.update().values(created_at=NOW - message_age, **FULL_NOTIFICATION))
            conn.execute(
                notifications.update()
                .where(notifications.c.id == self.alert)
                .values(context={"alert": {"detail": "masked"}})
            )
            conn.execute(outbox_messages.update().values(created_at=NOW - message_age, **FULL_OUTBOX))

    def state(self) -> dict[str, Any]:
        with self.db.read() as conn:
            body = conn.execute(sa.select(deliveries.c.body)).scalar_one()
            by_id = {r.id: r for r in conn.execute(sa.select(notifications))}
            outbox = conn.execute(sa.select(outbox_messages)).one()
        customer, alert = by_id[self.customer], by_id[self.alert]
        return {
            "body": body,
            "customer": (customer.subject, customer.body_text, customer.body_html),
            "customer_meta": (customer.kind, customer.status, customer.to_address, customer.created_at),
            "alert_context": alert.context,
            "outbox": (outbox.subject, outbox.text, outbox.html, outbox.headers),
            "outbox_meta": (outbox.to_address, outbox.channel, outbox.notification_id, outbox.created_at),
        }


@pytest.fixture()
def planted(database: Database) -> Iterator[Planted]:
    yield Planted(database)


@PROPERTY
@given(body_offset=OFFSETS, message_offset=OFFSETS)
def test_rows_past_the_cutoff_are_stripped_and_rows_inside_it_are_untouched(
    planted: Planted, body_offset: timedelta, message_offset: timedelta
) -> None:
    """Age = retention + offset: stripped exactly when the row is older than the retention
    (offset > 0); at the cutoff itself and inside it, every byte stays."""
    body_age = timedelta(days=BODIES_DAYS) + body_offset
    message_age = timedelta(days=MESSAGES_DAYS) + message_offset
    planted.refill(body_age=body_age, message_age=message_age)
    before = planted.state()

    retention.purge_expired(planted.db, now=NOW, bodies_days=BODIES_DAYS, messages_days=MESSAGES_DAYS)
    after = planted.state()

    assert after["body"] == ("" if body_offset > timedelta(0) else before["body"])
    if message_offset > timedelta(0):
        assert after["customer"] == (None, None, None)
        assert after["alert_context"] is None
        assert after["outbox"] == (None, "", None, {"X-Parcelhook-Removed": "retention"})
    else:
        for part in ("customer", "alert_context", "outbox"):
            assert after[part] == before[part]
    # the metadata stays either way
    assert after["customer_meta"] == before["customer_meta"]
    assert after["outbox_meta"] == before["outbox_meta"]


def _old_deliveries(db: Database, count: int, *, age: timedelta) -> None:
    with db.write() as conn:
        merchant, _ = merchant_store.upsert(conn, "acme", vault=VAULT, name="Acme", profile={})
        for i in range(count):
            delivery_store.record(
                db, conn, merchant_id=merchant.id, event_id=f"trk:{i}", event="track_updated",
                received_at=NOW - age, processed_at=NOW - age, outcome="processed", body=f'{{"n": {i}}}',
            )  # fmt: skip


class StatementCounter:
    """Counts the ``UPDATE deliveries`` statements the engine sends."""

    def __init__(self, db: Database) -> None:
        self.updates = 0
        sa.event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE DELIVERIES"):
            self.updates += 1


def _remaining(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.body != "")
            ).scalar_one()
        )


def test_batches_are_bounded_and_the_per_run_cap_is_honoured(database: Database) -> None:
    _old_deliveries(database, 10, age=timedelta(days=BODIES_DAYS + 1))
    counter = StatementCounter(database)

    # a cap of 2 batches of 3: 6 rows this run, the rest left for the next one
    capped = retention.purge_expired(
        database, now=NOW, bodies_days=BODIES_DAYS, messages_days=MESSAGES_DAYS, batch=3, max_batches=2
    )
    assert (capped.rows["deliveries"], capped.batches["deliveries"], capped.complete) == (6, 2, False)
    assert counter.updates == 2
    assert _remaining(database) == 4

    # uncapped: 3 + 1 rows in 2 more statements, and done
    rest = retention.purge_expired(
        database, now=NOW, bodies_days=BODIES_DAYS, messages_days=MESSAGES_DAYS, batch=3
    )
    assert (rest.rows["deliveries"], rest.batches["deliveries"], rest.complete) == (4, 2, True)
    assert counter.updates == 4
    assert _remaining(database) == 0

    # nothing left: no statement at all
    again = retention.purge_expired(
        database, now=NOW, bodies_days=BODIES_DAYS, messages_days=MESSAGES_DAYS, batch=3
    )
    assert again.rows["deliveries"] == 0 and counter.updates == 4


def test_ten_rows_in_batches_of_three_take_four_statements(database: Database) -> None:
    _old_deliveries(database, 10, age=timedelta(days=BODIES_DAYS, seconds=1))
    counter = StatementCounter(database)
    purged = retention.purge_expired(
        database, now=NOW, bodies_days=BODIES_DAYS, messages_days=MESSAGES_DAYS, batch=3
    )
    assert (purged.rows["deliveries"], purged.batches["deliveries"], counter.updates) == (10, 4, 4)
    assert _remaining(database) == 0


@pytest.mark.redis
def test_the_scheduler_job_strips_old_bodies_and_the_views_say_so(
    make_system: Any, database_url: str
) -> None:
    """Through the real pipeline: a webhook's body and its customer email, aged past retention,
    are stripped by the ``retention`` job a worker runs; a webhook inside the window keeps its
    body; the outbox API and the dashboard summary say ``removed after 7 days``, the order view
    still lists the notification."""
    from workers.actors import run_maintenance

    system: System = make_system(database_url, retain_messages_days=7, retain_bodies_days=3)
    merchant = label_shipped_to_jane(system)
    old = datetime.now(UTC) - timedelta(days=8)
    with system.database.write() as conn:  # as if all this happened 8 days ago
        conn.execute(deliveries.update().values(received_at=old))
        conn.execute(notifications.update().values(created_at=old))
        conn.execute(outbox_messages.update().values(created_at=old))
    system.post(merchant, scenario("delivered")[1])  # a fresh webhook, inside the window
    system.drain()

    run_maintenance.send("retention")
    system.drain()

    with system.database.read() as conn:
        bodies = [r.body for r in conn.execute(sa.select(deliveries).order_by(deliveries.c.id))]
        shipped = conn.execute(
            sa.select(notifications).where(
                notifications.c.kind == "shipped", notifications.c.channel == "email"
            )
        ).one()
    assert bodies[0] == "" and bodies[1].startswith("{")
    assert (shipped.subject, shipped.body_text, shipped.body_html) == (None, None, None)
    assert (shipped.status, shipped.to_address) == ("sent", "jane@example.com")

    auth = system.auth()
    outbox = system.admin.get("/api/outbox", headers=auth).get_json()["messages"]
    assert len(outbox) == 1
    message = outbox[0]
    assert message["removed"] == "removed after 7 days"
    assert (message["subject"], message["text"], message["html"]) == (None, None, None)
    assert (
        message["to"] == "j***@example.com" and message["kind"] == "shipped" and message["status"] == "sent"
    )
    summary = system.admin.get("/api/ops/summary", headers=auth)
    assert summary.status_code == 200
    assert summary.get_json()["outbox"][0]["removed"] == "removed after 7 days"
    order = system.admin.get("/api/merchants/acme/orders/1001", headers=auth)
    assert order.status_code == 200
    listed = order.get_json()["notifications"]
    assert ("shipped", "email", "sent", "j***@example.com") in [
        (n["kind"], n["channel"], n["status"], n["to"]) for n in listed
    ]


@pytest.mark.redis
def test_the_scheduler_enqueues_the_retention_job(system: System) -> None:
    from workers.clock import CADENCE_S, tick

    assert "retention" in tick(system.broker.client, now=2_000_000.0, last={}, force=True)
    assert CADENCE_S["retention"] > 0
