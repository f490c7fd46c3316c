"""The recovering consumer against a real Redis: a restarted consumer returns what its
predecessor dropped, never what a worker thread still holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest

from workers.recovery import RecoveringRedisBroker

pytestmark = pytest.mark.redis


@pytest.fixture()
def broker(redis_url: str) -> Iterator[RecoveringRedisBroker]:
    b = RecoveringRedisBroker(url=redis_url, namespace="recovery-test")
    b.declare_queue("q")
    yield b
    b.client.close()


def message(n: int) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name="q", actor_name="a", args=(n,), kwargs={}, options={})


def test_a_restarted_consumer_requeues_the_dropped_but_not_the_held(broker: RecoveringRedisBroker) -> None:
    for n in range(3):
        broker.enqueue(message(n))
    first = broker.consume("q", prefetch=3, timeout=100)
    held = next(first)  # handed to a worker thread: still running when the consumer restarts
    assert isinstance(first, broker.consumer_class)
    assert held is not None and len(first.message_cache) == 2, "two more prefetched in memory"
    assert broker.client.scard(broker.ack_key("q")) == 3

    second = broker.consume("q", prefetch=3, timeout=100)  # the predecessor (and its cache) is gone
    refetched = [m for m in (next(second), next(second)) if m is not None]
    assert len(refetched) == 2
    assert sorted(m.args[0] for m in refetched) == sorted({0, 1, 2} - {held.args[0]})
    assert broker.client.llen("recovery-test:q") == 0

    second.ack(held)  # the worker thread finishes the held one through the new consumer
    for m in refetched:
        second.ack(m)
    assert broker.client.scard(broker.ack_key("q")) == 0
    assert broker.client.hlen("recovery-test:q.msgs") == 0, "each message processed once"


def test_delayed_messages_are_never_held_across_a_restart(broker: RecoveringRedisBroker) -> None:
    broker.enqueue(message(7), delay=60_000)
    first = broker.consume("q.DQ", prefetch=10, timeout=100)
    delayed = next(first)
    assert delayed is not None and "eta" in delayed.options  # now in the thread's delay queue
    second = broker.consume("q.DQ", prefetch=10, timeout=100)  # dramatiq dropped that delay queue
    again = next(second)
    assert again is not None and again.args == (7,) and again.options["eta"] == delayed.options["eta"]


def test_maintenance_returns_a_silent_brokers_messages(broker: RecoveringRedisBroker, redis_url: str) -> None:
    dead = RecoveringRedisBroker(url=redis_url, namespace="recovery-test", heartbeat_timeout=1)
    dead.declare_queue("q")
    broker.enqueue(message(1))
    assert next(dead.consume("q", prefetch=1, timeout=100)) is not None  # then it dies
    broker.client.zadd("recovery-test:__heartbeats__", {dead.broker_id: 0})  # silent since long ago
    broker.maintain()
    assert broker.client.lrange("recovery-test:q", 0, -1) != [], "back on its queue"
    assert not broker.client.exists(dead.ack_key("q"))
    dead.client.close()
