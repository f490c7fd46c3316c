"""The queue inspector reads the real broker state of a real dramatiq RedisBroker."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from admin.queues import QueueInspector, QueueStats
from tests.integration.ops_fixtures import stand_in
from tests.support.polling import running_worker, wait_until
from workers.broker import QUEUES
from workers.heartbeat import WorkerHeartbeat

pytestmark = pytest.mark.redis


@pytest.fixture()
def inspector(redis_client: redis.Redis) -> QueueInspector:
    return QueueInspector(redis_client, "parcelhook", QUEUES)


def by_name(inspector: QueueInspector) -> dict[str, QueueStats]:
    return {q.name: q for q in inspector.queues()}


def test_ready_counts_follow_sends(ops_broker: RedisBroker, inspector: QueueInspector) -> None:
    events = stand_in(ops_broker, queue="events", name="process_event")
    notes = stand_in(ops_broker, queue="notifications", name="send_notification")
    for i in range(3):
        events.send("acme", f"ev-{i}", "2024-05-01T10:00:00+00:00", "{}")
    notes.send(7)

    stats = by_name(inspector)
    assert [q.name for q in inspector.queues()] == list(QUEUES)
    assert (
        stats["events"].ready,
        stats["events"].delayed,
        stats["events"].dead,
        stats["events"].in_flight,
    ) == (3, 0, 0, 0)
    assert stats["notifications"].ready == 1
    assert stats["maintenance"].ready == 0
    assert stats["events"].oldest_age_s is not None and 0 <= stats["events"].oldest_age_s < 10
    assert stats["maintenance"].oldest_age_s is None


def test_oldest_age_is_measured_from_the_head_message_timestamp(
    ops_broker: RedisBroker, inspector: QueueInspector
) -> None:
    events = stand_in(ops_broker, queue="events", name="process_event")
    first = events.send("acme", "ev-1", "2024-05-01T10:00:00+00:00", "{}")
    events.send("acme", "ev-2", "2024-05-01T10:00:00+00:00", "{}")
    [stats] = [q for q in inspector.queues(now_ms=first.message_timestamp + 5000) if q.name == "events"]
    assert stats.oldest_age_s == 5.0


def test_delayed_messages_count_even_while_a_worker_holds_them(
    ops_broker: RedisBroker, inspector: QueueInspector, redis_client: redis.Redis
) -> None:
    events = stand_in(ops_broker, queue="events", name="process_event")
    for i in range(2):
        events.send_with_options(args=("acme", f"ev-{i}", "x", "{}"), delay=60_000)
    stats = by_name(inspector)["events"]
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 2, 0)

    with running_worker(ops_broker):
        # a running worker prefetches delayed messages into memory at once
        wait_until(lambda: redis_client.llen("parcelhook:events.DQ") == 0)
        stats = by_name(inspector)["events"]
        assert (stats.ready, stats.delayed, stats.in_flight) == (0, 2, 0)


def test_in_flight_counts_messages_a_worker_is_running(
    ops_broker: RedisBroker, inspector: QueueInspector
) -> None:
    release, started = threading.Event(), threading.Event()

    def slow(*args: object) -> None:
        started.set()
        release.wait(10)

    events = stand_in(ops_broker, slow, queue="events", name="process_event")
    events.send("acme", "ev-1", "x", "{}")
    with running_worker(ops_broker, threads=1):
        try:
            assert started.wait(10)
            stats = by_name(inspector)["events"]
            assert (stats.ready, stats.in_flight, stats.dead) == (0, 1, 0)
        finally:
            release.set()
        wait_until(lambda: by_name(inspector)["events"].in_flight == 0)
    assert by_name(inspector)["events"].ready == 0


def test_dead_counts_messages_of_a_failing_actor(ops_broker: RedisBroker, inspector: QueueInspector) -> None:
    def boom(notification_id: int) -> None:
        raise RuntimeError("smtp down")

    notes = stand_in(ops_broker, boom, queue="notifications", name="send_notification", max_retries=0)
    notes.send(1)
    notes.send(2)
    with running_worker(ops_broker):
        wait_until(lambda: by_name(inspector)["notifications"].dead == 2)
    stats = by_name(inspector)["notifications"]
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 2)


def test_live_workers_come_from_worker_heartbeats_not_from_senders(
    ops_broker: RedisBroker, inspector: QueueInspector, redis_client: redis.Redis
) -> None:
    import os
    import socket

    ops_broker.add_middleware(WorkerHeartbeat(redis_client, "parcelhook", interval_s=0.2))
    actor = stand_in(ops_broker, queue="events", name="process_event")
    actor.send("acme", "ev", "x", "{}")  # a process that only enqueues (like `web`) is not a worker
    assert inspector.workers() == []
    with running_worker(ops_broker):
        wait_until(lambda: len(inspector.workers()) == 1)
        [worker] = inspector.workers()
        assert worker.id == f"{socket.gethostname()}:{os.getpid()}"
        assert 0 <= worker.last_seen_s < 5
        # beyond the heartbeat timeout it no longer counts as alive
        later = int(time.time() * 1000) + 61_000
        assert inspector.workers(now_ms=later) == []
    assert inspector.workers() == [], "a worker that shuts down takes its heartbeat with it"


def test_snapshot_has_the_contract_shape_and_changes_nothing(
    ops_broker: RedisBroker, inspector: QueueInspector, redis_client: redis.Redis
) -> None:
    events = stand_in(ops_broker, queue="events", name="process_event")
    events.send("acme", "ev-1", "x", "{}")
    events.send_with_options(args=("acme", "ev-2", "x", "{}"), delay=60_000)
    beat = WorkerHeartbeat(redis_client, "parcelhook")
    beat.beat()
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}

    snap = inspector.snapshot()

    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
    assert set(snap) == {"queues", "workers"}
    assert [q["name"] for q in snap["queues"]] == list(QUEUES)
    for q in snap["queues"]:
        assert set(q) == {"name", "ready", "delayed", "dead", "in_flight", "oldest_age_s"}
    events_q = snap["queues"][0]
    assert (events_q["ready"], events_q["delayed"]) == (1, 1)
    [worker] = snap["workers"]
    assert set(worker) == {"id", "last_seen_s"} and worker["id"] == beat.worker_id


def test_any_list_of_queues_is_accepted(ops_broker: RedisBroker, redis_client: redis.Redis) -> None:
    other = stand_in(ops_broker, queue="bulk_emails", name="odd")
    other.send()
    [stats] = QueueInspector(redis_client, "parcelhook", ["bulk_emails"]).queues()
    assert (stats.name, stats.ready) == ("bulk_emails", 1)
