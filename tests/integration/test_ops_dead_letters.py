"""Dead letters of a real dramatiq broker: list, requeue (processed once), purge -- on Redis
and on RabbitMQ (``rig`` runs each test on both). What is left Redis-only reads dramatiq's Redis
keys themselves (the message stored back with a fresh retry state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from admin.dead_letters import DeadLetters, RabbitDeadLetters, UnknownQueue
from admin.queues import QueueInspector, RabbitQueueInspector
from config import Settings
from tests.integration.conftest import BROKERS
from tests.integration.ops_fixtures import dead_letter, raising, stand_in
from tests.support.polling import running_worker, wait_until
from tests.support.rabbitmq import RabbitNode
from workers.broker import QUEUES
from workers.middleware import DeadLetterRecorder
from workers.queue_state import decode_message
from workers.redis_replies import raw, text
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis


@dataclass
class Rig:
    """One broker's dead letters: the workers' broker (with the recorder that keeps why a
    message died), and the ops side reading it (``dead_letters()`` makes a fresh reader)."""

    broker: dramatiq.Broker
    dead_letters: Callable[[], DeadLetters | RabbitDeadLetters]
    inspector: QueueInspector
    state: redis.Redis  # where the recorder keeps the failure details
    bare: Callable[[], dramatiq.Broker]  # a broker of the same kind without the recorder

    @property
    def dlq(self) -> DeadLetters | RabbitDeadLetters:
        return self.dead_letters()

    def ready(self, queue: str) -> int:
        return self.inspector.queue(queue).ready

    def dead_count(self, queue: str) -> int:
        """Dead letters on ``queue``, as the ops side reads them."""
        return self.dlq.count(queue)


def redis_rig(broker: RedisBroker, client: redis.Redis, url: str) -> Rig:
    """The rig on the test Redis (``broker``: ``ops_broker``, like the workers')."""

    def fresh() -> DeadLetters:
        return DeadLetters(redis.Redis(connection_pool=client.connection_pool), "parcelhook", QUEUES)

    return Rig(
        broker,
        fresh,
        QueueInspector(client, "parcelhook", QUEUES),
        client,
        lambda: RedisBroker(url=url, namespace="parcelhook"),
    )


@pytest.fixture(params=BROKERS)
def rig(request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis) -> Iterator[Rig]:
    if request.param == "redis":
        yield redis_rig(request.getfixturevalue("ops_broker"), redis_client, redis_url)
        return
    node: RabbitNode = request.getfixturevalue("rabbitmq_service")
    with node.vhost() as vhost:
        url = node.amqp_url(vhost)
        settings = replace(Settings(), broker_url=url, redis_url=redis_url)
        broker = RabbitmqBroker(url=url)
        broker.add_middleware(DeadLetterRecorder(Telemetry(redis_client)))
        try:
            yield Rig(
                broker,
                lambda: RabbitDeadLetters(redis_client, url, QUEUES),
                RabbitQueueInspector(redis_client, url, None, settings.broker_namespace, QUEUES),
                redis_client,
                lambda: RabbitmqBroker(url=url),
            )
        finally:
            broker.close()


@pytest.fixture()
def dlq(rig: Rig) -> DeadLetters | RabbitDeadLetters:
    return rig.dlq


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


def dead_letter_events(rig: Rig, n: int) -> tuple[Flaky, list[dramatiq.Message[Any]]]:
    flaky = Flaky()
    sent = dead_letter(
        rig.broker,
        flaky,
        queue="events",
        actor_name="process_event",
        calls=[("acme", f"ev-{i}", "2024-05-01T10:00:00+00:00", "{}") for i in range(n)],
        dead_count=rig.dead_count,
    )
    return flaky, sent


Letters = DeadLetters | RabbitDeadLetters


def test_list_describes_each_dead_letter(rig: Rig, dlq: Letters) -> None:
    _, sent = dead_letter_events(rig, 2)
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


def test_notification_dead_letters_carry_the_notification_id(rig: Rig, dlq: Letters) -> None:
    dead_letter(
        rig.broker,
        raising(ValueError("template broken")),
        queue="notifications",
        actor_name="send_notification",
        calls=[(42,)],
        dead_count=rig.dead_count,
    )
    [d] = dlq.list("notifications", 10)
    assert (d.actor, d.notification_id, d.merchant, d.last_error) == (
        "send_notification",
        42,
        None,
        "ValueError: template broken",
    )


def test_a_requeued_message_is_processed_exactly_once(rig: Rig, dlq: Letters) -> None:
    flaky, _ = dead_letter_events(rig, 2)
    target = next(d for d in dlq.list("events", 10) if d.event_id == "ev-1")

    assert dlq.requeue("events", [target.id, "no-such-id"]) == 1
    assert dlq.count("events") == 1
    assert rig.ready("events") == 1
    # requeueing the same id again does nothing
    assert dlq.requeue("events", [target.id]) == 0

    flaky.failing = False
    with running_worker(rig.broker):
        wait_until(lambda: len(flaky.calls) == 1)
        time.sleep(0.2)  # a second delivery would show up here
    # the worker has stopped: whatever it had fetched is acked (or back on the queue)
    assert flaky.calls == [("acme", "ev-1")]
    stats = rig.inspector.queue("events")
    assert (stats.ready, stats.dead) == (0, 1)
    assert [d.event_id for d in dlq.list("events", 10)] == ["ev-0"]


def test_a_requeued_message_goes_back_with_its_ids_and_a_fresh_retry_state(
    ops_broker: RedisBroker, redis_client: redis.Redis, redis_url: str
) -> None:
    """Redis only: dramatiq's own keys (the queue list, the message hash) after a requeue."""
    rig = redis_rig(ops_broker, redis_client, redis_url)
    flaky, sent = dead_letter_events(rig, 2)
    dlq = rig.dlq
    target = next(d for d in dlq.list("events", 10) if d.event_id == "ev-1")
    assert dlq.requeue("events", [target.id]) == 1
    assert redis_client.lrange("parcelhook:events", 0, -1) == [target.id.encode()]
    message = decode_message(raw(redis_client.hget("parcelhook:events.msgs", target.id)))
    assert message is not None
    assert message["message_id"] == sent[1].message_id
    assert message["queue_name"] == "events"
    assert message["options"]["retries"] == 0
    assert "traceback" not in message["options"]

    flaky.failing = False
    inspector = QueueInspector(redis_client, "parcelhook", QUEUES)
    with running_worker(ops_broker):
        wait_until(lambda: len(flaky.calls) == 1)
        wait_until(lambda: inspector.queue("events").in_flight == 0)
    stats = inspector.queue("events")
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 1)
    assert redis_client.hlen("parcelhook:events.msgs") == 0


def test_requeue_all_moves_every_dead_letter(rig: Rig, dlq: Letters) -> None:
    flaky, _ = dead_letter_events(rig, 3)
    assert dlq.requeue("events", None) == 3
    assert dlq.count("events") == 0
    assert rig.ready("events") == 3
    flaky.failing = False
    with running_worker(rig.broker):
        wait_until(lambda: len(flaky.calls) == 3)
    assert sorted(e for _, e in flaky.calls) == ["ev-0", "ev-1", "ev-2"]


def test_concurrent_requeues_move_each_message_once(rig: Rig, dlq: Letters) -> None:
    dead_letter_events(rig, 5)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        other = rig.dead_letters()  # each its own connection
        barrier.wait()
        results.append(other.requeue("events", None))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 5
    assert rig.ready("events") == 5
    assert dlq.count("events") == 0


def test_purge_by_ids_and_all(rig: Rig, dlq: Letters) -> None:
    dead_letter_events(rig, 3)
    ids = [d.id for d in dlq.list("events", 10)]
    assert dlq.purge("events", [ids[0], "unknown"]) == 1
    assert dlq.count("events") == 2
    assert sorted(d.id for d in dlq.list("events", 10)) == sorted(ids[1:])
    assert dlq.purge("events", []) == 0
    assert dlq.purge("events", None) == 2
    assert dlq.count("events") == 0
    assert dlq.list("events", 10) == []
    assert rig.ready("events") == 0


def test_purge_leaves_no_redis_key_behind(
    ops_broker: RedisBroker, redis_client: redis.Redis, redis_url: str
) -> None:
    """Redis only: dramatiq's dead-letter hash goes with its last message."""
    rig = redis_rig(ops_broker, redis_client, redis_url)
    dlq = rig.dlq
    dead_letter_events(rig, 3)
    dlq.purge("events", [dlq.list("events", 1)[0].id])
    assert redis_client.hlen("parcelhook:events.XQ.msgs") == 2
    dlq.purge("events", None)
    assert not redis_client.exists("parcelhook:events.XQ.msgs")


def test_retried_messages_report_every_attempt_and_the_final_error(rig: Rig, dlq: Letters) -> None:
    attempts: list[int] = []

    def boom(notification_id: int) -> None:
        attempts.append(notification_id)
        raise ConnectionError(f"attempt {len(attempts)}")

    notes = stand_in(
        rig.broker,
        boom,
        queue="notifications",
        name="send_notification",
        max_retries=2,
        min_backoff=10,
        max_backoff=50,
    )
    notes.send(9)
    with running_worker(rig.broker):
        wait_until(lambda: dlq.count("notifications") == 1)
    [d] = dlq.list("notifications", 10)
    assert (d.attempts, d.last_error) == (3, "ConnectionError: attempt 3")


def test_without_the_recorder_the_stored_message_still_gives_attempts(rig: Rig, dlq: Letters) -> None:
    bare = rig.bare()
    try:
        dead_letter(
            bare,
            raising(ValueError("nope")),
            queue="notifications",
            actor_name="send_notification",
            calls=[(1,)],
            dead_count=rig.dead_count,
        )
    finally:
        bare.close()
    [d] = dlq.list("notifications", 10)
    assert (d.attempts, d.last_error, d.notification_id) == (1, None, 1)


def test_requeue_and_purge_forget_the_failure_details(rig: Rig, dlq: Letters) -> None:
    dead_letter_events(rig, 2)
    assert len(rig.state.keys("parcelhook:telemetry:dlq:*")) == 2
    first, second = (d.id for d in dlq.list("events", 10))
    dlq.requeue("events", [first])
    kept = [text(k) for k in rig.state.keys("parcelhook:telemetry:dlq:*")]
    assert len(kept) == 1 and kept[0].startswith("parcelhook:telemetry:dlq:events:"), kept
    assert [d.id for d in dlq.list("events", 10)] == [second]
    assert dlq.list("events", 10)[0].last_error is not None, "the kept details are the survivor's"
    dlq.purge("events", None)
    assert rig.state.keys("parcelhook:telemetry:dlq:*") == []


def test_unknown_queue_is_refused(dlq: Letters) -> None:
    with pytest.raises(UnknownQueue):
        dlq.list("nope", 10)
    with pytest.raises(UnknownQueue):
        dlq.purge("nope", None)
