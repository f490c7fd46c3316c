"""What sending one notification costs the database, and that the cheaper claim still guards
what it guarded: the outbox send is one transaction of one read and the capture with its
``sent`` (two statements on SQLite, one on PostgreSQL); the read (notification, order,
shipment, opt-out, templates in one statement) still waits for a scan that holds the shipment,
then suppresses what that scan made stale; a message captured before is kept, not doubled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from config import Settings
from domain.shipment import ShipmentState
from domain.vocabulary import ShipmentStatus
from store import merchants as merchant_store
from store import notifications as notification_store
from store.database import Database, utcnow
from store.schema import outbox_messages, shipments
from tests.integration.conftest import VAULT
from tests.support.messages import NORTHWIND_EMAIL
from tests.support.polling import wait_until
from tests.support.rows import email_order
from tests.support.webhooks import label
from workers.outbox import OutboxChannel
from workers.processing import process_event
from workers.sending import Sender, SendOutcome


@pytest.fixture
def postgres_db(pg_template: str) -> Iterator[Database]:
    from tests.integration.conftest import _fresh_pg

    db = Database(_fresh_pg(pg_template))
    yield db
    db.dispose()


def _sender(db: Database) -> Sender:
    settings = replace(Settings(), database_url=db.url, signing_key="test-signing-key")
    return Sender(settings, db, email=None, sms=None)  # both channels: the outbox


def _shipped_email(db: Database) -> int:
    """Order 1001 registered for email, and its label processed: the queued ``shipped`` email."""
    with db.write() as conn:
        merchant, _ = merchant_store.upsert(
            conn, "acme", vault=VAULT, name="Acme", profile={"order_ref_pattern": r"Order (\d+)"}
        )
        email_order(db, conn, merchant.id, "1001", {"name": "Jane Doe", "email": "jane@example.com"})
    body = label("txn-1", "9400100000000000000001", "1001")
    now = utcnow()
    outcome = process_event(db, "acme", "txn:1", now, body, now)
    assert len(outcome.notification_ids) == 1, outcome
    return outcome.notification_ids[0]


def _send(sender: Sender, notification_id: int) -> SendOutcome:
    return sender.send(
        notification_id, on_deferred=lambda *_: None, on_alert=lambda _: None, message_id="m-1"
    )


class _Statements:
    """Every statement the engine sends, and every commit, while listening."""

    def __init__(self, db: Database) -> None:
        self.texts: list[str] = []
        self.commits = 0
        self.engine = db.engine

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.texts.append(statement.split()[0].upper())

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


def test_an_outbox_send_is_one_transaction_of_one_read_and_two_writes(database: Database) -> None:
    notification_id = _shipped_email(database)
    sender = _sender(database)
    with _Statements(database) as seen:
        assert _send(sender, notification_id) == SendOutcome.SENT
    statements = [s for s in seen.texts if s != "BEGIN"]  # SQLite's own BEGIN IMMEDIATE
    # PostgreSQL captures and records in one statement (``WITH captured AS (INSERT …) UPDATE …``)
    assert statements == (["SELECT", "INSERT", "UPDATE"] if database.is_sqlite else ["SELECT", "WITH"]), (
        seen.texts
    )
    assert seen.commits == 1
    with database.read() as conn:
        row = notification_store.get(conn, notification_id)
        captured = conn.execute(
            sa.select(outbox_messages.c.id, outbox_messages.c.subject).where(
                outbox_messages.c.notification_id == notification_id
            )
        ).one()
    assert row is not None and row.status == "sent" and row.provider_id == f"outbox-{captured.id}"
    assert row.attempts == 1 and captured.subject


def test_a_send_waits_for_the_scan_holding_its_shipment_and_then_suppresses_what_it_made_stale(
    postgres_db: Database,
) -> None:
    """PostgreSQL, where the claim's read takes the row locks (SQLite serializes whole write
    transactions). A scan has locked the shipment and delivered it; the send's read
    waits for it, sees the committed state and suppresses the email: it never goes out stale."""
    db = postgres_db
    notification_id = _shipped_email(db)
    sender = _sender(db)
    outcomes: list[SendOutcome] = []
    with db.engine.connect() as scan:
        with scan.begin():
            pid = scan.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            stored = scan.execute(sa.select(shipments.c.id, shipments.c.state).with_for_update()).one()
            later = replace(ShipmentState.from_dict(stored.state), status=ShipmentStatus.DELIVERED)
            scan.execute(shipments.update().where(shipments.c.id == stored.id).values(state=later.to_dict()))
            sending = threading.Thread(target=lambda: outcomes.append(_send(sender, notification_id)))
            sending.start()
            wait_until(lambda: _blocked_by(db, pid), timeout=20, what="the send waiting for the scan")
            assert not outcomes
        sending.join(30)
    assert outcomes == [SendOutcome.SUPPRESSED]
    with db.read() as conn:
        row = notification_store.get(conn, notification_id)
        captured = conn.execute(sa.select(sa.func.count()).select_from(outbox_messages)).scalar_one()
    assert row is not None and row.status == "suppressed"
    assert row.error == "superseded: shipment is now delivered" and captured == 0


def test_a_message_captured_by_an_earlier_attempt_is_recorded_not_captured_again(database: Database) -> None:
    notification_id = _shipped_email(database)
    with database.read() as conn:
        row = notification_store.get(conn, notification_id)
    assert row is not None
    earlier = OutboxChannel(database, "email").send(replace(NORTHWIND_EMAIL, idempotency_key=row.key))
    assert _send(_sender(database), notification_id) == SendOutcome.SENT
    with database.read() as conn:
        sent = notification_store.get(conn, notification_id)
        [captured] = notification_store.outbox_list(conn, merchant_id=None, limit=10)
    assert sent is not None and (sent.status, sent.provider_id) == ("sent", earlier.provider_id)
    assert (captured["notification_id"], captured["subject"]) == (notification_id, NORTHWIND_EMAIL.subject)


def _blocked_by(db: Database, pid: int) -> bool:
    with db.engine.connect() as conn:
        waiting = conn.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        ).scalar_one()
    return bool(waiting)
