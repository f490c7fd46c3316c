"""No customer data in error logs or dead letters, even when the database itself refuses a write.

A customer with a unique name, email and phone, and a scan with a unique street address, go
through the real pipeline while the database (a CHECK constraint on PostgreSQL, a trigger on
SQLite) refuses the write that carries them. The messages retry and are dead-lettered; then every
log record (DEBUG, every logger, SQLAlchemy's included, tracebacks formatted) and everything the
dead-letter store records about the failures is searched for the planted values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.polling import wait_until
from tests.support.retries import RetryOptions
from workers.redis_replies import text

pytestmark = pytest.mark.redis

LABEL, _pre, ACCEPTED, _departed, _arrived, OUT_FOR_DELIVERY, DELIVERED = scenario("delivered")

FIRST_NAME = "Quillonia"
NAME = f"{FIRST_NAME} Marsh-Vetterling"
EMAIL = "quillonia.vetterling.7731@example.org"
PHONE = "+15557310042"
STREET = "742 Zephyrine Terrace"
PLANTED = (FIRST_NAME, NAME, EMAIL, PHONE, STREET)

# One guard per phase: (PostgreSQL, SQLite) DDL that makes the database refuse the write
# carrying a planted value. PostgreSQL's CHECK also echoes the whole row in its DETAIL.
GUARDS = {
    "send": (
        "ALTER TABLE notifications ADD CONSTRAINT guard_send CHECK "
        f"(sending_at IS NULL OR strpos(coalesce(body_text, ''), '{FIRST_NAME}') = 0) NOT VALID",
        "CREATE TRIGGER guard_send BEFORE UPDATE ON notifications "
        f"WHEN NEW.sending_at IS NOT NULL AND instr(coalesce(NEW.body_text, ''), '{FIRST_NAME}') > 0 "
        "BEGIN SELECT RAISE(ABORT, 'guard_send'); END",
    ),
    "scan": (
        f"ALTER TABLE shipment_scans ADD CONSTRAINT guard_scan CHECK (strpos(details, '{STREET}') = 0) NOT VALID",
        "CREATE TRIGGER guard_scan BEFORE INSERT ON shipment_scans "
        f"WHEN instr(NEW.details, '{STREET}') > 0 BEGIN SELECT RAISE(ABORT, 'guard_scan'); END",
    ),
    "sms_intent": (
        f"ALTER TABLE notifications ADD CONSTRAINT guard_sms CHECK (to_address IS DISTINCT FROM '{PHONE}') NOT VALID",
        "CREATE TRIGGER guard_sms BEFORE INSERT ON notifications "
        f"WHEN NEW.to_address = '{PHONE}' BEGIN SELECT RAISE(ABORT, 'guard_sms'); END",
    ),
    "email_intent": (
        f"ALTER TABLE notifications ADD CONSTRAINT guard_email CHECK (to_address IS DISTINCT FROM '{EMAIL}') "
        "NOT VALID",
        "CREATE TRIGGER guard_email BEFORE INSERT ON notifications "
        f"WHEN NEW.to_address = '{EMAIL}' BEGIN SELECT RAISE(ABORT, 'guard_email'); END",
    ),
}
DROP = {
    "send": ("ALTER TABLE notifications DROP CONSTRAINT guard_send", "DROP TRIGGER guard_send"),
    "sms_intent": ("ALTER TABLE notifications DROP CONSTRAINT guard_sms", "DROP TRIGGER guard_sms"),
}


@pytest.fixture
def one_fast_retry(retry_options: RetryOptions) -> None:
    """One retry, 10-50 ms apart (production: 1 s → 5 min and 10 s → 10 min)."""
    from workers.actors import process_event, send_notification

    for actor in (process_event, send_notification):
        retry_options(actor, max_retries=1, min_backoff=10, max_backoff=50)


def _ddl(system: System, table: dict[str, tuple[str, str]], phase: str) -> None:
    """On a raw driver connection: the test's own DDL (which names the planted values) is not
    what the application logs."""
    statement = table[phase][1 if system.database.is_sqlite else 0]
    conn = system.database.engine.raw_connection()
    try:
        cursor = conn.cursor()
        cursor.execute(statement)
        cursor.close()
        conn.commit()
    finally:
        conn.close()


def _with_street(raw: bytes) -> bytes:
    """The accepted scan, now with the customer's street in its details and location."""
    body = json.loads(raw)
    status = body["data"]["tracking_status"]
    for scan in [status, *body["data"]["tracking_history"]]:
        if scan["object_id"] == status["object_id"]:
            scan["status_details"] = f"Accepted at the door of {STREET}, Springfield"
            scan["location"] = {**scan["location"], "city": f"{STREET}, Springfield"}
    return json.dumps(body).encode()


def _dead(system: System, queue: str) -> int:
    return int(system.broker.client.zcard(f"{system.broker.namespace}:{queue}.XQ"))


def _dead_letter_records(system: System) -> list[tuple[str, str]]:
    """What the dead-letter store keeps about each failure: the stored message minus the webhook
    body it carries on purpose (requeue needs it), dramatiq's traceback included; the recorder's
    final error + traceback; and what the ops API and ``dlq list`` show."""
    client, ns = system.broker.client, system.broker.namespace
    found: list[tuple[str, str]] = []
    for queue in ("events", "notifications"):
        for redis_id, blob in client.hgetall(f"{ns}:{queue}.XQ.msgs").items():
            message: dict[str, Any] = json.loads(blob)
            if message["actor_name"] == "process_event":
                message["args"] = message["args"][
                    :3
                ]  # merchant, event id, received at (the body is the data)
            found.append((f"{queue} message {text(redis_id)}", json.dumps(message)))
        listing = system.admin.get(f"/api/ops/dead-letters?queue={queue}", headers=system.auth())
        assert listing.status_code == 200
        found.append((f"GET /api/ops/dead-letters?queue={queue}", listing.get_data(as_text=True)))
    for key in client.scan_iter("parcelhook:telemetry:dlq:*"):
        value = client.get(key)
        assert value is not None
        found.append((text(key), text(value)))
    return found


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [(record.name, formatter.format(record)) for record in caplog.records]


def test_database_errors_leave_no_customer_data_in_logs_or_dead_letters(
    make_system: Callable[..., System],
    database_url: str,
    one_fast_retry: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "dramatiq"):
        caplog.set_level(logging.DEBUG, logger=name)
    system = make_system(database_url)
    merchant = system.create_merchant("acme", **h.merchant_profile())
    h.register_order(system, "1001", name=NAME, email=EMAIL, phone=PHONE)
    system.start_worker()

    # 1. sending: the claim writes the rendered email ("Hi Quillonia, ...") and the database refuses
    _ddl(system, GUARDS, "send")
    assert system.post(merchant, LABEL).status_code == 200
    system.drain()
    wait_until(lambda: _dead(system, "notifications") >= 1, what="the email send dead-lettered")
    _ddl(system, DROP, "send")

    # 2. processing: the scan with the customer's street is refused
    _ddl(system, GUARDS, "scan")
    assert system.post(merchant, _with_street(ACCEPTED)).status_code == 200
    system.drain()
    wait_until(lambda: _dead(system, "events") == 1, what="the scan's event dead-lettered")

    # 3. processing: the SMS intent (to the customer's phone) is refused
    _ddl(system, GUARDS, "sms_intent")
    assert system.post(merchant, OUT_FOR_DELIVERY).status_code == 200
    system.drain()
    wait_until(lambda: _dead(system, "events") == 2, what="the SMS intent's event dead-lettered")
    _ddl(system, DROP, "sms_intent")

    # 4. processing: the email intent (to the customer's address) is refused
    _ddl(system, GUARDS, "email_intent")
    assert system.post(merchant, DELIVERED).status_code == 200
    system.drain()
    wait_until(lambda: _dead(system, "events") == 3, what="the email intent's event dead-lettered")

    logs = _log_lines(caplog)
    records = _dead_letter_records(system)
    # the failures really happened, were logged with their cause and recorded
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    for guard in ("guard_send", "guard_scan", "guard_sms", "guard_email"):
        assert any(guard in logging.Formatter().format(r) for r in failures), f"the {guard} failure is logged"
    assert any(name.startswith("sqlalchemy.engine") for name, _ in logs), "SQL logging was captured"
    assert len([r for r in records if " message " in r[0]]) == 4
    with system.database.read() as conn:  # the planted values really went into the system
        stored = json.dumps([dict(r._mapping) for r in conn.execute(sa.text("SELECT customer FROM orders"))])
    assert EMAIL in stored and PHONE in stored and NAME in stored

    leaks = [(where, value) for where, text in [*logs, *records] for value in PLANTED if value in text]
    assert leaks == []
