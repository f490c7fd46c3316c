"""Reconciliation also catches a retry whose delayed message was lost or stranded (issue 9),
and a twin send message is a no-op: the customer is told once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.integration.conftest import System
from tests.support.scenes import label_shipped_to_jane

pytestmark = pytest.mark.redis


def _sent_shipped_email(system: System) -> int:
    from store.schema import notifications

    label_shipped_to_jane(system)
    with system.database.read() as conn:
        return int(
            conn.execute(sa.select(notifications.c.id).where(notifications.c.status == "sent")).scalar_one()
        )


def _after_a_transient_failure(
    system: System, notification_id: int, *, ago: timedelta, **values: object
) -> None:
    """As if an attempt failed transiently ``ago`` and its retry message never came back."""
    from store.schema import notifications

    with system.database.write() as conn:
        conn.execute(
            notifications.update()
            .where(notifications.c.id == notification_id)
            .values(
                **{
                    "status": "queued",
                    "sending_at": None,
                    "sent_at": None,
                    "attempts": 2,
                    "error_code": "20500",
                    "updated_at": datetime.now(UTC) - ago,
                    **values,
                }
            )
        )
        conn.exec_driver_sql("DELETE FROM outbox_messages")


def _outbox(system: System) -> list[str]:
    return [m["kind"] for m in system.admin.get("/api/outbox", headers=system.auth()).get_json()["messages"]]


def test_a_retry_overdue_beyond_the_longest_backoff_is_re_enqueued_and_sent_once(system: System) -> None:
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile

    row = _sent_shipped_email(system)
    _after_a_transient_failure(system, row, ago=timedelta(minutes=9))
    assert enqueue_followups(reconcile(system.runtime)) == 0, (
        "within the longest backoff a live retry may still own the row"
    )
    _after_a_transient_failure(system, row, ago=timedelta(minutes=16))
    assert enqueue_followups(reconcile(system.runtime)) == 1
    system.drain()
    assert _outbox(system) == ["shipped"]
    assert enqueue_followups(reconcile(system.runtime)) == 0


def test_a_deferred_row_whose_attempt_ran_is_re_enqueued_once_its_time_is_long_past(system: System) -> None:
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile

    row = _sent_shipped_email(system)
    _after_a_transient_failure(
        system,
        row,
        ago=timedelta(hours=2),
        status="deferred",
        scheduled_for=datetime.now(UTC) + timedelta(hours=1),
    )
    assert enqueue_followups(reconcile(system.runtime)) == 0, "quiet hours not over yet"
    _after_a_transient_failure(
        system,
        row,
        ago=timedelta(hours=2),
        status="deferred",
        scheduled_for=datetime.now(UTC) - timedelta(hours=1),
    )
    assert enqueue_followups(reconcile(system.runtime)) == 1
    system.drain()
    assert _outbox(system) == ["shipped"]


def test_the_stranded_original_arriving_after_reconciliation_sent_it_is_a_no_op(system: System) -> None:
    from workers.actors import enqueue_followups, send_notification
    from workers.scheduler import reconcile

    row = _sent_shipped_email(system)
    _after_a_transient_failure(system, row, ago=timedelta(hours=1))
    assert enqueue_followups(reconcile(system.runtime)) == 1
    system.drain()
    send_notification.send(row)  # the original retry, released late (e.g. a worker restart)
    system.drain()
    assert _outbox(system) == ["shipped"]
