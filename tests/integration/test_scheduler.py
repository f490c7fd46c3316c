"""The scheduler: each tick is enqueued once across instances; stalls and lost sends are found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support.scenes import label_shipped_to_jane

pytestmark = pytest.mark.redis


def test_two_schedulers_enqueue_each_tick_once_and_run_the_health_check_themselves(system: System) -> None:
    from workers.clock import CADENCE_S, IN_SCHEDULER, tick

    client = system.broker.client
    first = tick(client, now=1_000_000.0, last={}, force=True)
    second = tick(client, now=1_000_000.0, last={}, force=True)
    assert {"alerts", "reconcile", "stalls", "retention"} <= set(first) == set(CADENCE_S)
    assert second == []
    queued = client.lrange("parcelhook:maintenance", 0, -1)
    assert IN_SCHEDULER == {"alerts"}
    assert len(queued) == len(CADENCE_S) - 1  # alerts ran in the scheduler process
    assert client.exists("parcelhook:health:alerts") or client.exists("parcelhook:health:last_check")


def test_a_shipment_without_scans_for_the_stall_window_opens_stalled_and_alerts_the_merchant(
    system: System,
) -> None:
    from store.schema import notifications, shipments
    from workers.actors import enqueue_followups
    from workers.scheduler import detect_stalls

    merchant = system.create_merchant(order_ref_pattern=r"Order (\d+)", alert_email="ops@acme.example")
    system.start_worker()
    for body in scenario("delivered")[:3]:  # label, pre-transit, accepted: then silence
        system.post(merchant, body)
    system.drain()
    with system.database.write() as conn:  # the last scan was five days ago
        conn.execute(shipments.update().values(last_scan_at=datetime.now(UTC) - timedelta(days=5)))
    assert enqueue_followups(detect_stalls(system.runtime)) == 1
    system.drain()
    assert enqueue_followups(detect_stalls(system.runtime)) == 0  # once per occurrence
    order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    assert order["shipments"][0]["exception"]["class"] == "stalled"
    assert order["status"] == "exception"
    with system.database.read() as conn:
        alerts = conn.execute(sa.select(notifications).where(notifications.c.kind == "stalled")).fetchall()
    assert [(a.audience, a.status) for a in alerts] == [("merchant", "sent")]


def test_reconciliation_re_enqueues_a_send_whose_message_was_lost(system: System) -> None:
    from store.schema import notifications
    from workers.actors import enqueue_followups
    from workers.scheduler import reconcile

    label_shipped_to_jane(system)
    with system.database.write() as conn:  # as if the worker died between commit and enqueue
        conn.execute(
            notifications.update()
            .where(notifications.c.status == "sent")
            .values(
                status="queued",
                sending_at=None,
                sent_at=None,
                attempts=0,
                updated_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        conn.exec_driver_sql("DELETE FROM outbox_messages")
    assert enqueue_followups(reconcile(system.runtime)) == 1
    system.drain()
    outbox = system.admin.get("/api/outbox", headers=system.auth()).get_json()["messages"]
    assert [m["kind"] for m in outbox] == ["shipped"]
    assert enqueue_followups(reconcile(system.runtime)) == 0
