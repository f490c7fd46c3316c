"""A claimed notification is sent at most once, whoever else asks for it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.vocabulary import Channel
from tests.integration.conftest import System
from tests.support import rows
from tests.support.scenes import claimed_notification, label_shipped_to_jane

pytestmark = pytest.mark.redis


def _claimed_row(system: System, *, claimed_by: str, age: timedelta) -> int:
    label_shipped_to_jane(system, alert_email="ops@acme.example")
    return claimed_notification(
        system,
        channel="email",
        key="1001:s1:shipped:email:claimed",
        to_address="jane@example.com",
        age=age,
        claimed_by=claimed_by,
    )


def _status(system: System, notification_id: int) -> tuple[str, str | None]:
    from store import notifications as notification_store

    with system.database.read() as conn:
        n = notification_store.get(conn, notification_id)
    assert n is not None
    return n.status, n.error_code


def test_a_twin_message_waits_while_another_attempt_is_in_its_provider_call(system: System) -> None:
    from workers.sending import SendInProgress

    row = _claimed_row(system, claimed_by="message-A", age=timedelta(seconds=5))
    with pytest.raises(SendInProgress):
        system.runtime.sender.send(
            row, on_deferred=lambda *_: None, on_alert=lambda _: None, message_id="message-B"
        )
    assert _status(system, row) == ("queued", None)


def test_the_claimers_own_redelivery_gives_up_at_most_once(system: System) -> None:
    alerts: list[int] = []
    row = _claimed_row(system, claimed_by="message-A", age=timedelta(seconds=5))
    outcome = system.runtime.sender.send(
        row, on_deferred=lambda *_: None, on_alert=alerts.append, message_id="message-A"
    )
    assert outcome == "outcome_unknown"
    assert _status(system, row) == ("failed", "outcome_unknown")
    assert len(alerts) == 1


def test_a_claim_older_than_any_provider_call_is_given_up_whoever_asks(system: System) -> None:
    row = _claimed_row(system, claimed_by="message-A", age=timedelta(minutes=10))
    outcome = system.runtime.sender.send(
        row, on_deferred=lambda *_: None, on_alert=lambda _: None, message_id="message-B"
    )
    assert outcome == "outcome_unknown"


def test_reconciliation_leaves_rows_that_an_attempt_already_owns(system: System) -> None:
    from datetime import UTC, datetime

    from store.schema import notifications
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile

    row = _claimed_row(system, claimed_by="message-A", age=timedelta(minutes=10))
    with system.database.write() as conn:  # a transient failure: back to queued, dramatiq's retry owns it
        conn.execute(
            notifications.update()
            .where(notifications.c.id == row)
            .values(
                sending_at=None, error="451 try later", updated_at=datetime.now(UTC) - timedelta(minutes=5)
            )
        )
    assert (
        enqueue_followups(reconcile(system.runtime)) == 0
    )  # within the retry horizon (see test_reconcile_overdue_retries)


def test_a_delivery_receipt_that_beats_the_recorded_sid_is_applied_on_retry(system: System) -> None:
    from store import notifications as notification_store
    from workers.callbacks import UnknownMessage, sms_status

    row = _claimed_row(system, claimed_by="message-A", age=timedelta(seconds=1))
    with pytest.raises(UnknownMessage):  # the actor's retry comes back for it
        sms_status(system.database, "acme", "SM" + "0" * 32, "delivered", None)
    with system.database.write() as conn:
        notification_store.update(conn, row, status="sent", provider_id="SM" + "0" * 32)
    sms_status(system.database, "acme", "SM" + "0" * 32, "delivered", None)
    assert _status(system, row) == ("delivered", None)


def test_an_uncertain_delivery_is_never_retried_and_the_merchant_is_told(system: System) -> None:
    from notifiers.channel import UncertainDeliveryError
    from notifiers.testing import RecordingChannel

    email = RecordingChannel("email")
    email.fail_next(UncertainDeliveryError("SMTP server gave no answer after the message"))
    system.runtime.sender.channels[Channel.EMAIL] = email
    system.create_merchant(order_ref_pattern=r"Order (\d+)", alert_email="ops@acme.example")
    with system.database.write() as conn:
        row = rows.order_notification(system.database, conn, "acme", "1001")
    assert row is not None
    alerts: list[int] = []
    assert (
        system.runtime.sender.send(row, on_deferred=lambda *_: None, on_alert=alerts.append)
        == "outcome_unknown"
    )
    assert _status(system, row) == ("failed", "outcome_unknown")
    assert len(email.attempts) == 1 and len(alerts) == 1
