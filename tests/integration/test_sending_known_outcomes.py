"""A provider's answer is a known outcome: it is recorded even when the database write after
it fails, and it never turns into a false "could not be sent" alert. And a suppressed row says
why it was suppressed, not what an earlier attempt's provider said.

The database fault is real: a PostgreSQL trigger on ``notifications`` refuses the customer SMS
row's update to ``sent`` with SQLSTATE 57P01 (``admin_shutdown``, what the driver reports while
the server restarts), and is dropped again — the record step sees exactly what it sees in an
outage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support import rows
from tests.support.polling import wait_until
from tests.support.retries import RetryOptions
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

LABEL, *TRACKS = scenario("delivered")
DELIVERED = TRACKS[-1]

FAULT = """
CREATE SEQUENCE fault_hits;
CREATE FUNCTION refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'sent' AND NEW.channel = 'sms' AND NEW.audience = 'customer'
     AND nextval('fault_hits') <= {limit} THEN
    RAISE EXCEPTION 'terminating connection due to administrator command' USING ERRCODE = '57P01';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_sent BEFORE UPDATE ON notifications FOR EACH ROW EXECUTE FUNCTION refuse_sent();
"""


@pytest.fixture
def postgres_db(pg_template: str) -> str:
    from tests.integration.conftest import _fresh_pg

    return _fresh_pg(pg_template)


@pytest.fixture
def slow_retries(retry_options: RetryOptions) -> Callable[..., None]:
    """Retries 0.3–0.6 s apart (production: 10 s → 10 min) and enough of them to outlast the fault.
    Call it to change send_notification's options further for one test."""
    from workers.actors import send_notification

    retry_options(send_notification, min_backoff=300, max_backoff=600, max_retries=12)
    return functools.partial(retry_options, send_notification)


def _in_process_attempts() -> int:
    """How many times one attempt writes its record before the actor's retry takes over
    (before the fix: once)."""
    from workers import sending

    return len(getattr(sending, "RECORD_BACKOFF_S", ())) + 1


def _fault(system: System, *, limit: int) -> None:
    with system.database.engine.begin() as conn:
        conn.exec_driver_sql(FAULT.format(limit=limit))


def _hits(system: System) -> int:
    """How many writes of ``sent`` the SMS row has seen (refused or not)."""
    with system.database.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT last_value - CASE WHEN is_called THEN 0 ELSE 1 END FROM fault_hits"
            ).scalar_one()
        )


def _heal(system: System) -> None:
    with system.database.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_sent ON notifications")


def _sms_row(system: System) -> h.Row:
    [row] = [
        r for r in h.rows(system) if r.channel == "sms" and r.kind == "delivered" and r.audience == "customer"
    ]
    return row


def _sms_status(system: System) -> str | None:
    found = [r.status for r in h.rows(system) if r.channel == "sms" and r.kind == "delivered"]
    return found[0] if found else None


def _alerts(system: System) -> list[h.Row]:
    return [r for r in h.rows(system) if r.kind == "notification_failed"]


def _start(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer
) -> tuple[System, dict[str, Any]]:
    system, merchant = h.acme_for_jane(make_system, url, smtp, twilio)
    system.post(merchant, LABEL)
    system.drain()
    return system, merchant


def test_an_outage_longer_than_the_in_process_retries_still_records_the_sms_as_sent(
    make_system: Callable[..., System],
    postgres_db: str,
    slow_retries: Callable[..., None],
) -> None:
    """The record step fails on every in-process attempt; the actor's retry finds the row still
    ``sending`` and records the provider id kept before the write — no second SMS, no alert."""
    in_process_attempts = _in_process_attempts()
    with h.channels() as (smtp, twilio):
        system, merchant = _start(make_system, postgres_db, smtp, twilio)
        _fault(system, limit=10_000)
        system.post(merchant, DELIVERED)
        # the first attempt has given up on recording (or, without the fix, the row is final)
        wait_until(
            lambda: _hits(system) >= in_process_attempts or _sms_status(system) == "failed",
            timeout=60,
            what="the first attempt's record step to give up",
        )
        _heal(system)
        system.drain()
        row = _sms_row(system)
        assert len(twilio.messages) == 1, "exactly one SMS at the provider"
        assert len([r for r in twilio.requests if r.path.endswith("/Messages.json")]) == 1
        assert (row.status, row.provider_id, row.error_code) == ("sent", twilio.messages[0]["sid"], None), row
        assert row.attempts == 1, "recorded from the kept answer, never claimed for a second send"
        assert _alerts(system) == []
        assert [m.rcpt_tos for m in smtp.messages if m.rcpt_tos == [h.ALERTS]] == []


def test_an_outage_longer_than_every_retry_still_ends_sent_not_failed(
    make_system: Callable[..., System],
    postgres_db: str,
    slow_retries: Callable[..., None],
) -> None:
    """Retries run out while the database still refuses: giving up consults the kept answer
    too, so the row ends ``sent`` and the merchant hears nothing."""
    slow_retries(max_retries=1)
    with h.channels() as (smtp, twilio):
        system, merchant = _start(make_system, postgres_db, smtp, twilio)
        _fault(system, limit=10_000)
        system.post(merchant, DELIVERED)
        # the first attempt's writes, then the one retry's: every retry has been used up
        wait_until(
            lambda: _hits(system) >= _in_process_attempts() + 1 or _sms_status(system) == "failed",
            timeout=60,
            what="the retries to run out",
        )
        _heal(system)
        system.drain()
        row = _sms_row(system)
        assert (row.status, row.provider_id, row.error_code) == ("sent", twilio.messages[0]["sid"], None), row
        assert len(twilio.messages) == 1
        assert _alerts(system) == []


def test_a_short_outage_is_outlasted_by_the_in_process_retry_of_the_record_step(
    make_system: Callable[..., System],
    postgres_db: str,
    slow_retries: Callable[..., None],
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _start(make_system, postgres_db, smtp, twilio)
        _fault(system, limit=2)  # the first two writes of `sent` fail, the third goes through
        system.post(merchant, DELIVERED)
        system.drain()
        row = _sms_row(system)
        assert (row.status, row.provider_id, row.error_code) == ("sent", twilio.messages[0]["sid"], None), row
        assert len(twilio.messages) == 1
        assert _alerts(system) == []
        assert _hits(system) == 3 and row.attempts == 1, "recorded by the first attempt's third write"


def test_without_a_kept_answer_the_outcome_is_still_unknown_and_never_resent(
    make_system: Callable[..., System],
    postgres_db: str,
    slow_retries: Callable[..., None],
) -> None:
    """The genuine uncertain case: the receipt is gone (the state Redis lost it) when the retry
    comes — at most once, ``outcome_unknown``, and the merchant is told."""
    with h.channels() as (smtp, twilio):
        system, merchant = _start(make_system, postgres_db, smtp, twilio)
        slow_retries(min_backoff=3_000, max_backoff=3_000)
        _fault(system, limit=10_000)
        system.post(merchant, DELIVERED)
        wait_until(
            lambda: _hits(system) >= _in_process_attempts(),
            timeout=60,
            what="the first attempt's record step to give up",
        )
        receipts = system.runtime.sender.receipts
        assert receipts is not None, "a system with a state Redis keeps receipts"
        state = receipts.client  # the state Redis (here: the broker's)
        kept = state.keys("*:receipt:*")
        assert kept, "the provider's answer was kept before the record step"
        state.delete(*kept)
        _heal(system)
        system.drain()
        row = _sms_row(system)
        assert (row.status, row.error_code) == ("failed", "outcome_unknown"), row
        assert len(twilio.messages) == 1
        [alert] = _alerts(system)
        assert alert.status == "sent"


def test_a_suppressed_row_keeps_no_provider_error_from_an_earlier_attempt(
    make_system: Callable[..., System],
    database_url: str,
) -> None:
    """Twilio answers 500 (code 20500) to the first attempt; the customer texts STOP before the
    retry. The retry suppresses the SMS: the row says why, and nothing about the 500."""
    from notifiers.channel import TransientChannelError
    from store import merchants as merchant_store
    from store import notifications as notification_store

    with h.wired(make_system, database_url) as (system, smtp, twilio):
        system.create_merchant("acme", **h.merchant_profile())
        with system.database.write() as conn:
            row_id = rows.order_notification(
                system.database, conn, "acme", "1001", channel="sms", to_address="+15551230001"
            )
        assert row_id is not None
        sender = system.runtime.sender
        twilio.fail_next(500)
        with pytest.raises(TransientChannelError):
            sender.send(row_id, on_deferred=lambda *_: None, on_alert=lambda _: None, message_id="m-1")
        with system.database.read() as conn:
            first = notification_store.get(conn, row_id)
        assert first is not None and (first.status, first.error_code) == ("queued", "20500")
        with system.database.write() as conn:
            merchant = merchant_store.require(conn, "acme")
            notification_store.opt_out(system.database, conn, merchant.id, "sms", "+15551230001", "keyword")
        assert (
            sender.send(row_id, on_deferred=lambda *_: None, on_alert=lambda _: None, message_id="m-1")
            == "suppressed"
        )
        with system.database.read() as conn:
            row = notification_store.get(conn, row_id)
        assert row is not None
        assert (row.status, row.error, row.error_code) == ("suppressed", "recipient opted out of sms", None)
        assert twilio.messages == []


def test_the_receipt_outlives_the_retry_horizon() -> None:
    from workers.actors import send_notification
    from workers.receipts import RECEIPT_TTL

    options = send_notification.options
    horizon_ms = sum(
        min(options["min_backoff"] * 2**n, options["max_backoff"]) for n in range(options["max_retries"])
    )
    time_limits_ms = (options["max_retries"] + 1) * options["time_limit"]
    assert RECEIPT_TTL.total_seconds() * 1000 > 10 * (horizon_ms + time_limits_ms)
