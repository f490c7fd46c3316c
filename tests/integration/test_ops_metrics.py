"""/metrics text equals the broker's real state and the shared telemetry."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from admin.metrics import render_metrics
from admin.queues import QueueInspector
from tests.integration.ops_fixtures import ops_services_for, stand_in
from tests.support.deliveries import delivery
from tests.support.polling import wait_until
from tests.support.services import free_port
from workers.broker import QUEUES
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis


def samples(services: SimpleNamespace) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = render_metrics(services)
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_queue_gauges_equal_the_broker_state(ops_broker: RedisBroker, ops_services: SimpleNamespace) -> None:
    release, started = threading.Event(), threading.Event()

    def slow(*args: object) -> None:
        started.set()
        release.wait(10)

    def boom(notification_id: int) -> None:
        raise RuntimeError("down")

    events = stand_in(ops_broker, slow, queue="events", name="process_event")
    notes = stand_in(ops_broker, boom, queue="notifications", name="send_notification", max_retries=0)
    notes.send(1)
    from workers.heartbeat import WorkerHeartbeat

    ops_broker.add_middleware(WorkerHeartbeat(ops_services.redis, "parcelhook", interval_s=0.2))
    worker = dramatiq.Worker(ops_broker, worker_timeout=100, worker_threads=1)
    worker.queue_prefetch = 1  # in_flight counts prefetched messages too; keep it to the running one
    worker.start()
    try:
        events.send("acme", "ev-0", "x", "{}")
        assert started.wait(10)
        for i in range(1, 4):
            events.send("acme", f"ev-{i}", "x", "{}")
        events.send_with_options(args=("acme", "later", "x", "{}"), delay=60_000)
        inspector = QueueInspector(ops_services.redis, "parcelhook", QUEUES)
        wait_until(lambda: inspector.queue("notifications").dead == 1)
        wait_until(lambda: len(inspector.workers()) == 1)

        m = samples(ops_services)
        expected = {q.name: q for q in inspector.queues()}
        assert list(expected) == list(QUEUES)
        for name, q in expected.items():
            label = (("queue", name),)
            assert m[("parcelhook_queue_ready_messages", label)] == q.ready
            assert m[("parcelhook_queue_delayed_messages", label)] == q.delayed
            assert m[("parcelhook_queue_dead_messages", label)] == q.dead
            assert m[("parcelhook_queue_in_flight_messages", label)] == q.in_flight
            assert m[("parcelhook_queue_oldest_message_age_seconds", label)] == pytest.approx(
                q.oldest_age_s or 0, abs=1
            )
        label = (("queue", "events"),)
        assert (
            m[("parcelhook_queue_ready_messages", label)],
            m[("parcelhook_queue_in_flight_messages", label)],
            m[("parcelhook_queue_delayed_messages", label)],
        ) == (3, 1, 1)
        assert m[("parcelhook_queue_dead_messages", (("queue", "notifications"),))] == 1
        assert m[("parcelhook_workers_alive", ())] == 1
        assert m[("parcelhook_broker_up", ())] == 1
    finally:
        release.set()
        worker.stop()


def test_telemetry_series(ops_services: SimpleNamespace) -> None:
    t: Telemetry = ops_services.telemetry
    for latency in (0.002, 0.002, 0.2):
        t.webhook(**delivery(latency_s=latency))
    t.webhook(**delivery("acme", "rejected", 401, "bad token", latency_s=0.001))
    t.processed(actor="process_event", outcome="ok", latency_s=0.3, carrier_lag_s=1000)
    t.processed(actor="send_notification", outcome="failed", latency_s=2)
    t.notification(channel="sms", kind="out_for_delivery", status="sent")

    m = samples(ops_services)
    assert (
        m[
            (
                "parcelhook_webhooks_received_total",
                (("event", "track_updated"), ("merchant", "acme"), ("outcome", "queued")),
            )
        ]
        == 3
    )
    assert (
        m[
            (
                "parcelhook_webhooks_received_total",
                (("event", "track_updated"), ("merchant", "acme"), ("outcome", "rejected")),
            )
        ]
        == 1
    )
    assert m[("parcelhook_webhook_latency_seconds_bucket", (("le", "0.001"),))] == 1
    assert m[("parcelhook_webhook_latency_seconds_bucket", (("le", "0.0025"),))] == 3
    assert m[("parcelhook_webhook_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert m[("parcelhook_webhook_latency_seconds_count", ())] == 4
    assert m[("parcelhook_webhook_latency_seconds_sum", ())] == pytest.approx(0.205)
    assert m[("parcelhook_events_processed_total", (("actor", "process_event"), ("outcome", "ok")))] == 1
    assert (
        m[("parcelhook_events_processed_total", (("actor", "send_notification"), ("outcome", "failed")))] == 1
    )
    assert (
        m[("parcelhook_processing_latency_seconds_bucket", (("actor", "process_event"), ("le", "0.5")))] == 1
    )
    assert m[("parcelhook_processing_latency_seconds_count", (("actor", "send_notification"),))] == 1
    assert m[("parcelhook_carrier_lag_seconds_bucket", (("le", "900.0"),))] == 0
    assert m[("parcelhook_carrier_lag_seconds_bucket", (("le", "1800.0"),))] == 1
    assert (
        m[
            (
                "parcelhook_notifications_total",
                (("channel", "sms"), ("kind", "out_for_delivery"), ("status", "sent")),
            )
        ]
        == 1
    )
    assert m[("parcelhook_telemetry_up", ())] == 1


def test_scrape_still_answers_when_redis_is_down() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    m = samples(ops_services_for(down))
    assert m[("parcelhook_broker_up", ())] == 0
    assert m[("parcelhook_telemetry_up", ())] == 0
    assert not any(name.startswith("parcelhook_queue_") for name, _ in m)
