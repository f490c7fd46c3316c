"""Reconciliation finds deferred sends whose moment has passed in ONE query
(``store.notifications.deferred_overdue``): rows still waiting for their moment (quiet hours
until the morning) neither cost a query each nor take the places of due rows in the batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System

pytestmark = pytest.mark.redis

LONG_AGO = timedelta(hours=1)


def _deferred_rows(system: System, merchant_id: int, n: int, *, due: bool, prefix: str) -> None:
    """``n`` deferred sends no attempt claimed, last changed an hour ago; due (moment an hour
    ago) or still waiting (moment in eight hours)."""
    from store.schema import notifications

    now = datetime.now(UTC)
    moment = now - LONG_AGO if due else now + timedelta(hours=8)
    rows = [
        {
            "merchant_id": merchant_id,
            "kind": "shipped",
            "channel": "email",
            "audience": "customer",
            "idempotency_key": f"{prefix}-{i}",
            "status": "deferred",
            "to_address": "jane@example.com",
            "context": {},
            "attempts": 0,
            "created_at": now - LONG_AGO,
            "updated_at": now - LONG_AGO,
            "scheduled_for": moment,
        }
        for i in range(n)
    ]
    with system.database.write() as conn:
        conn.execute(notifications.insert(), rows)


def _merchant_id(system: System) -> int:
    from store import merchants as merchant_store

    with system.database.read() as conn:
        return merchant_store.require(conn, "acme").id


@contextmanager
def _statements(system: System) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(system.database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(system.database.engine, "before_cursor_execute", count)


def test_a_due_deferred_send_is_re_enqueued_behind_more_than_a_batch_of_rows_still_waiting(
    system: System,
) -> None:
    from store.schema import notifications
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile

    merchant = system.create_merchant(order_ref_pattern=r"Order (\d+)")
    # More rows than a batch, still waiting for their moment, with lower ids than the real one:
    _deferred_rows(system, _merchant_id(system), 501, due=False, prefix="night")
    system.admin.put(
        "/api/merchants/acme/orders/1001",
        json={"customer": {"email": "jane@example.com"}},
        headers=system.auth(),
    )
    system.post(merchant, scenario("delivered")[0])
    system.start_worker()
    system.drain()
    with system.database.write() as conn:  # deferred to a moment now past; its delayed message vanished
        sent = conn.execute(
            sa.select(notifications.c.id).where(notifications.c.status == "sent")
        ).scalar_one()
        conn.execute(
            notifications.update()
            .where(notifications.c.id == sent)
            .values(
                status="deferred",
                sending_at=None,
                sent_at=None,
                attempts=0,
                provider_id=None,
                scheduled_for=datetime.now(UTC) - LONG_AGO,
                updated_at=datetime.now(UTC) - LONG_AGO,
            )
        )
        conn.exec_driver_sql("DELETE FROM outbox_messages")
    assert enqueue_followups(reconcile(system.runtime)) == 1
    system.drain()
    outbox = system.admin.get("/api/outbox", headers=system.auth()).get_json()["messages"]
    assert [m["kind"] for m in outbox] == ["shipped"]


def test_reconciliation_reads_deferred_rows_in_one_query_however_many_are_due(system: System) -> None:
    from workers.scheduler import reconcile

    system.create_merchant()
    merchant_id = _merchant_id(system)
    _deferred_rows(system, merchant_id, 2, due=True, prefix="few")
    with _statements(system) as few:
        assert len(reconcile(system.runtime).notifications) == 2
    _deferred_rows(system, merchant_id, 40, due=True, prefix="many")
    with _statements(system) as many:
        assert len(reconcile(system.runtime).notifications) == 42
    assert len(few) > 0 and len(many) == len(few), (few, many)
