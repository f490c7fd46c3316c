"""Dead letters of a real dramatiq RedisBroker: list, requeue (processed once), purge."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from admin.dead_letters import DeadLetters, UnknownQueue
from admin.queues import QueueInspector
from tests.integration.ops_fixtures import dead_letter, raising, stand_in
from tests.support.polling import running_worker, wait_until
from workers.broker import QUEUES
from workers.queue_state import decode_message
from workers.redis_replies import raw

pytestmark = pytest.mark.redis


@pytest.fixture()
def dlq(redis_client: redis.Redis) -> DeadLetters:
    return DeadLetters(redis_client, "parcelhook", QUEUES)


class Flaky:
    """process_event that fails while ``failing`` is set and records every successful call."""

    def __init__(self) -> None:
        self.failing = True
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, merchant: str, event_id: str, received_at: str, body: str) -> None:
        if self.failing:
            raise RuntimeError(f"db down for {event_id}")
        with self.lock:
            self.calls.append((merchant, event_id))


def dead_letter_events(broker: RedisBroker, n: int) -> tuple[Flaky, list[dramatiq.Message[Any]]]:
    flaky = Flaky()
    sent = dead_letter(
        broker,
        flaky,
        queue="events",
        actor_name="process_event",
        calls=[("acme", f"ev-{i}", "2024-05-01T10:00:00+00:00", "{}") for i in range(n)],
    )
    return flaky, sent


def test_list_describes_each_dead_letter(ops_broker: RedisBroker, dlq: DeadLetters) -> None:
    _, sent = dead_letter_events(ops_broker, 2)
    letters = dlq.list("events", limit=10)
    assert len(letters) == 2
    by_event = {d.event_id: d for d in letters}
    assert set(by_event) == {"ev-0", "ev-1"}
    d = by_event["ev-0"]
    assert (d.queue, d.actor, d.merchant, d.attempts) == ("events", "process_event", "acme", 1)
    assert d.last_error == "RuntimeError: db down for ev-0"
    assert d.message_id == sent[0].message_id
    assert d.dead_lettered_at is not None and d.dead_lettered_at.endswith("+00:00")
    assert dlq.list("events", limit=1)[0].id in {x.id for x in letters}
    assert dlq.list("notifications", limit=10) == []


def test_notification_dead_letters_carry_the_notification_id(
    ops_broker: RedisBroker, dlq: DeadLetters
) -> None:
    dead_letter(
        ops_broker,
        raising(ValueError("template broken")),
        queue="notifications",
        actor_name="send_notification",
        calls=[(42,)],
    )
    [d] = dlq.list("notifications", 10)
    assert (d.actor, d.notification_id, d.merchant, d.last_error) == (
        "send_notification",
        42,
        None,
        "ValueError: template broken",
    )


def test_a_requeued_message_is_processed_exactly_once(
    ops_broker: RedisBroker, dlq: DeadLetters, redis_client: redis.Redis
) -> None:
    flaky, sent = dead_letter_events(ops_broker, 2)
    target = next(d for d in dlq.list("events", 10) if d.event_id == "ev-1")

    assert dlq.requeue("events", [target.id, "no-such-id"]) == 1
    assert dlq.count("events") == 1
    # back on the queue with the same ids and a fresh retry state
    assert redis_client.lrange("parcelhook:events", 0, -1) == [target.id.encode()]
    message = decode_message(raw(redis_client.hget("parcelhook:events.msgs", target.id)))
    assert message is not None
    assert message["message_id"] == sent[1].message_id
    assert message["queue_name"] == "events"
    assert message["options"]["retries"] == 0
    assert "traceback" not in message["options"]
    # requeueing the same id again does nothing
    assert dlq.requeue("events", [target.id]) == 0

    flaky.failing = False
    inspector = QueueInspector(redis_client, "parcelhook", QUEUES)
    with running_worker(ops_broker):
        wait_until(lambda: len(flaky.calls) == 1)
        wait_until(lambda: inspector.queue("events").in_flight == 0)
        time.sleep(0.2)  # a second delivery would show up here
    assert flaky.calls == [("acme", "ev-1")]
    stats = inspector.queue("events")
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 1)
    assert redis_client.hlen("parcelhook:events.msgs") == 0


def test_requeue_all_moves_every_dead_letter(
    ops_broker: RedisBroker, dlq: DeadLetters, redis_client: redis.Redis
) -> None:
    flaky, _ = dead_letter_events(ops_broker, 3)
    assert dlq.requeue("events", None) == 3
    assert dlq.count("events") == 0
    assert redis_client.llen("parcelhook:events") == 3
    flaky.failing = False
    with running_worker(ops_broker):
        wait_until(lambda: len(flaky.calls) == 3)
    assert sorted(e for _, e in flaky.calls) == ["ev-0", "ev-1", "ev-2"]


def test_concurrent_requeues_move_each_message_once(
    ops_broker: RedisBroker, dlq: DeadLetters, redis_client: redis.Redis
) -> None:
    dead_letter_events(ops_broker, 5)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        other = DeadLetters(redis.Redis(connection_pool=redis_client.connection_pool), "parcelhook", QUEUES)
        barrier.wait()
        results.append(other.requeue("events", None))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 5
    assert redis_client.llen("parcelhook:events") == 5
    assert redis_client.hlen("parcelhook:events.msgs") == 5
    assert dlq.count("events") == 0


def test_purge_by_ids_and_all(ops_broker: RedisBroker, dlq: DeadLetters, redis_client: redis.Redis) -> None:
    dead_letter_events(ops_broker, 3)
    ids = [d.id for d in dlq.list("events", 10)]
    assert dlq.purge("events", [ids[0], "unknown"]) == 1
    assert dlq.count("events") == 2
    assert redis_client.hlen("parcelhook:events.XQ.msgs") == 2
    assert dlq.purge("events", []) == 0
    assert dlq.purge("events", None) == 2
    assert dlq.count("events") == 0
    assert not redis_client.exists("parcelhook:events.XQ.msgs")
    assert redis_client.llen("parcelhook:events") == 0


def test_retried_messages_report_every_attempt_and_the_final_error(
    ops_broker: RedisBroker, dlq: DeadLetters
) -> None:
    attempts: list[int] = []

    def boom(notification_id: int) -> None:
        attempts.append(notification_id)
        raise ConnectionError(f"attempt {len(attempts)}")

    notes = stand_in(
        ops_broker,
        boom,
        queue="notifications",
        name="send_notification",
        max_retries=2,
        min_backoff=10,
        max_backoff=50,
    )
    notes.send(9)
    with running_worker(ops_broker):
        wait_until(lambda: dlq.count("notifications") == 1)
    [d] = dlq.list("notifications", 10)
    assert (d.attempts, d.last_error) == (3, "ConnectionError: attempt 3")


def test_without_the_recorder_the_stored_message_still_gives_attempts(
    redis_url: str, dlq: DeadLetters
) -> None:
    bare = RedisBroker(url=redis_url, namespace="parcelhook")
    try:
        dead_letter(
            bare,
            raising(ValueError("nope")),
            queue="notifications",
            actor_name="send_notification",
            calls=[(1,)],
        )
    finally:
        bare.close()
    [d] = dlq.list("notifications", 10)
    assert (d.attempts, d.last_error, d.notification_id) == (1, None, 1)


def test_requeue_and_purge_forget_the_failure_details(
    ops_broker: RedisBroker, dlq: DeadLetters, redis_client: redis.Redis
) -> None:
    dead_letter_events(ops_broker, 2)
    assert len(redis_client.keys("parcelhook:telemetry:dlq:*")) == 2
    first, second = (d.id for d in dlq.list("events", 10))
    dlq.requeue("events", [first])
    assert redis_client.keys("parcelhook:telemetry:dlq:*") == [
        f"parcelhook:telemetry:dlq:events:{second}".encode()
    ]
    dlq.purge("events", None)
    assert redis_client.keys("parcelhook:telemetry:dlq:*") == []


def test_unknown_queue_is_refused(dlq: DeadLetters) -> None:
    with pytest.raises(UnknownQueue):
        dlq.list("nope", 10)
    with pytest.raises(UnknownQueue):
        dlq.purge("nope", None)
