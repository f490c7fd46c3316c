"""Provider failures over real SMTP and the real twilio client: transient → retried → one message;
permanent → ``failed`` with the provider's code, not retried, merchant alerted; retries exhausted →
``failed`` + alert; and the crash window between "provider accepted" and "recorded"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from domain.vocabulary import Channel
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support import rows
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

LABEL, *TRACKS = scenario("delivered")
DELIVERED = TRACKS[-1]  # carries the whole scan history: one burst → "delivered" (email + SMS)


def _system(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer, **customer: Any
) -> tuple[System, dict[str, Any]]:
    return h.acme_for_jane(make_system, url, smtp, twilio, **customer)


def _row(system: System, channel: str, kind: str) -> h.Row:
    [row] = [
        r for r in h.rows(system) if r.channel == channel and r.kind == kind and r.audience == "customer"
    ]
    return row


def _alerts(system: System) -> list[h.Row]:
    return [r for r in h.rows(system) if r.kind == "notification_failed"]


@contextmanager
def _shipped_email_after(
    make_system: Callable[..., System], url: str, rcpt_reply: str
) -> Iterator[tuple[System, SmtpServer, h.Row]]:
    """The label posted while the SMTP server answers the customer's RCPT with ``rcpt_reply``
    once: the system, the SMTP server and the ``shipped`` email's row once the queue is drained."""
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, url, smtp, twilio)
        smtp.reply_next("rcpt", rcpt_reply)
        system.post(merchant, LABEL)
        system.drain()
        yield system, smtp, _row(system, "email", "shipped")


@contextmanager
def _delivered_sms_after(
    make_system: Callable[..., System], url: str, status: int, **failure: Any
) -> Iterator[tuple[System, SmtpServer, TwilioServer, h.Row]]:
    """The label processed, then the delivered webhook posted while Twilio answers ``status``
    (``failure``: :meth:`TwilioServer.fail_next`'s other arguments): the system, both servers
    and the ``delivered`` SMS's row once the queue is drained."""
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, url, smtp, twilio)
        system.post(merchant, LABEL)
        system.drain()
        twilio.fail_next(status, **failure)
        system.post(merchant, DELIVERED)
        system.drain()
        yield system, smtp, twilio, _row(system, "sms", "delivered")


def test_smtp_451_once_then_success_sends_one_email(
    make_system: Callable[..., System], database_url: str, fast_retries: Callable[..., None]
) -> None:
    with _shipped_email_after(make_system, database_url, "451 4.3.0 Try again later") as (system, smtp, row):
        assert row.status == "sent"
        assert row.attempts == 2
        assert [m.message["Subject"] for m in smtp.messages] == ["Your Acme Inc order 1001 has shipped"]
        assert _alerts(system) == []


@pytest.mark.parametrize("status", [429, 500])
def test_twilio_transient_error_once_then_success_sends_one_sms(
    make_system: Callable[..., System], sqlite_url: str, fast_retries: Callable[..., None], status: int
) -> None:
    with _delivered_sms_after(make_system, sqlite_url, status) as (system, _smtp, twilio, row):
        assert row.status == "sent", row
        assert row.attempts == 2
        assert len(twilio.messages) == 1 and twilio.messages[0]["sid"] == row.provider_id
        assert len([r for r in twilio.requests if r.path.endswith("/Messages.json")]) == 2
        assert _alerts(system) == []


def test_smtp_550_fails_without_retry_and_alerts_the_merchant(
    make_system: Callable[..., System], database_url: str, fast_retries: Callable[..., None]
) -> None:
    with _shipped_email_after(make_system, database_url, "550 5.1.1 No such user") as (system, smtp, row):
        assert (row.status, row.error_code, row.attempts) == ("failed", "550", 1)
        [alert] = _alerts(system)
        assert (alert.status, alert.to, alert.audience) == ("sent", h.ALERTS, "merchant")
        [mail] = smtp.messages  # the alert; the customer email was refused and not retried
        assert mail.rcpt_tos == [h.ALERTS]
        body = h.text_part(mail)
        assert "1001" in body and "550" in body
        assert "jane@example.com" not in body, "the alert masks the address"


def test_twilio_21211_fails_without_retry_and_alerts_the_merchant(
    make_system: Callable[..., System], sqlite_url: str, fast_retries: Callable[..., None]
) -> None:
    with _delivered_sms_after(make_system, sqlite_url, 400, code=21211) as (system, smtp, twilio, row):
        assert (row.status, row.error_code, row.attempts) == ("failed", "21211", 1)
        assert len([r for r in twilio.requests if r.path.endswith("/Messages.json")]) == 1
        [alert] = _alerts(system)
        assert alert.status == "sent"
        assert [m.rcpt_tos for m in smtp.messages if m.rcpt_tos == [h.ALERTS]] == [[h.ALERTS]]
        order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
        [sms] = [n for n in order["notifications"] if n["channel"] == "sms" and n["status"] != "suppressed"]
        assert sms["status"] == "failed" and "21211" in sms["error"]


def test_retries_exhausted_fail_the_notification_and_alert_the_merchant(
    make_system: Callable[..., System], sqlite_url: str, fast_retries: Callable[..., None]
) -> None:
    fast_retries(2)
    with _delivered_sms_after(make_system, sqlite_url, 503, times=10) as (system, smtp, twilio, row):
        assert row.status == "failed", row
        assert row.attempts == 3  # the first try + 2 retries
        assert row.error and "gave up after 2 retries" in row.error
        assert twilio.messages == []
        [alert] = _alerts(system)
        assert alert.status == "sent"
        [mail] = [m for m in smtp.messages if m.rcpt_tos == [h.ALERTS]]
        assert "1001" in h.text_part(mail)


def test_a_crash_after_the_provider_accepted_never_sends_twice(
    make_system: Callable[..., System],
    database_url: str,
    fast_retries: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies between SMTP's 250 and recording ``sent``: the redelivered message finds the
    row still marked as sending and gives up (at most once), marks it ``outcome_unknown`` and alerts."""
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, database_url, smtp, twilio)
        email = system.runtime.sender.channels[Channel.EMAIL]
        real_send = email.send
        crashed: list[str] = []

        def accept_then_crash(msg: Any) -> Any:
            result = real_send(msg)
            if not crashed:
                crashed.append(msg.to)
                raise RuntimeError("worker killed after the provider accepted")
            return result

        monkeypatch.setattr(email, "send", accept_then_crash)
        system.post(merchant, LABEL)
        system.drain()
        row = _row(system, "email", "shipped")
        assert (row.status, row.error_code) == ("failed", "outcome_unknown")
        customer_mail = [m for m in smtp.messages if m.rcpt_tos == ["jane@example.com"]]
        assert len(customer_mail) == 1, "exactly one customer email, never a second"
        [alert] = _alerts(system)
        assert alert.status == "sent"
        assert len([m for m in smtp.messages if m.rcpt_tos == [h.ALERTS]]) == 1


def test_a_redelivered_send_for_a_row_left_sending_does_not_send(
    make_system: Callable[..., System],
    sqlite_url: str,
) -> None:
    from store import notifications as notification_store
    from store.database import utcnow
    from workers.actors import send_notification

    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, sqlite_url, smtp, twilio)
        system.post(merchant, LABEL)
        system.drain()
        sent = _row(system, "email", "shipped")
        # a second row, as if a worker had claimed it and died inside the provider call
        with system.database.write() as conn:
            new_id = rows.notification(
                system.database, conn, 1, order_id=1, shipment_id=1, key="1001:crash:shipped:email"
            )
            assert new_id is not None
            notification_store.update(conn, new_id, sending_at=utcnow(), attempts=1)
        before = len(smtp.messages)
        send_notification.send(new_id)
        send_notification.send(sent.id)  # and a redelivery of one that was sent: a no-op
        system.drain()
        [row] = [r for r in h.rows(system) if r.id == new_id]
        assert (row.status, row.error_code) == ("failed", "outcome_unknown")
        assert [r.status for r in h.rows(system) if r.id == sent.id] == ["sent"]
        new_mail = smtp.messages[before:]
        assert [m.rcpt_tos for m in new_mail] == [[h.ALERTS]], "only the merchant alert, no customer email"
