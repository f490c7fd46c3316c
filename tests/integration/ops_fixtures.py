"""What the ops tests share (queues, dead letters, /metrics, the ops API and CLI), on the real
session Redis: a plain client, the broker the workers run (with the dead-letter recorder), the
services object the admin side reads, and a way to dead-letter messages through a real worker.

Registered for every integration test by tests/integration/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, cast

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from tests.support.polling import running_worker, wait_until
from workers.broker import QUEUES
from workers.middleware import DeadLetterRecorder
from workers.telemetry import Telemetry

NAMESPACE = "parcelhook"


def ops_services_for(client: redis.Redis) -> SimpleNamespace:
    """What admin's ops code reads from the app's services, on ``client``."""
    return SimpleNamespace(
        settings=None,
        redis=client,
        namespace=NAMESPACE,
        queues=QUEUES,
        telemetry=Telemetry(client),
        engine=None,
    )


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture()
def ops_services(redis_client: redis.Redis) -> SimpleNamespace:
    return ops_services_for(redis_client)


@pytest.fixture()
def ops_broker(redis_url: str, redis_client: redis.Redis) -> Iterator[RedisBroker]:
    """A RedisBroker like the workers' (``workers/broker.py``): same namespace, and the recorder
    that keeps why a message was dead-lettered."""
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE)
    broker.add_middleware(DeadLetterRecorder(Telemetry(redis_client)))
    yield broker
    broker.close()


def _nothing(*args: object) -> None:
    pass


def stand_in(
    broker: dramatiq.Broker,
    fn: Callable[..., None] = _nothing,
    *,
    queue: str,
    name: str,
    **options: Any,
) -> dramatiq.Actor[..., None]:
    """An actor named like one of the workers' (``name`` on ``queue``) running ``fn``: by default
    nothing, so a test can enqueue and count without a worker's real code."""
    return dramatiq.actor(broker=broker, queue_name=queue, actor_name=name, **options)(fn)


def raising(error: Exception) -> Callable[..., None]:
    """An actor body that always fails with ``error``."""

    def fail(*args: object) -> None:
        raise error

    return fail


def dead_letter(
    broker: dramatiq.Broker,
    fn: Callable[..., None],
    *,
    queue: str,
    actor_name: str,
    calls: Sequence[tuple[Any, ...]],
    dead_count: Callable[[str], int] | None = None,
) -> list[dramatiq.Message[Any]]:
    """Send ``calls`` to an actor running ``fn`` without retries, and run a real worker until
    every one of them is dead-lettered: until ``dead_count(queue)`` (by default the count in the
    Redis broker's own dead-letter set) is their number. Returns the messages sent."""
    count = dead_count or (lambda q: int(cast(RedisBroker, broker).client.zcard(f"{NAMESPACE}:{q}.XQ")))
    actor = stand_in(broker, fn, queue=queue, name=actor_name, max_retries=0)
    sent = [actor.send(*args) for args in calls]
    with running_worker(broker):
        wait_until(lambda: count(queue) == len(sent), what=f"{len(sent)} dead letters on {queue}")
    return sent


#: Each queue's real actor, and the arguments of its n-th message.
_ACTOR_CALLS: dict[str, tuple[str, Callable[[int], tuple[Any, ...]]]] = {
    "events": ("process_event", lambda i: ("acme", f"ev-{i}", "2024-05-01T10:00:00+00:00", "{}")),
    "notifications": ("send_notification", lambda i: (100 + i,)),
}


def dead_letters_on(broker: RedisBroker, queue: str, n: int, error: Exception) -> None:
    """``n`` messages of ``queue``'s actor dead-lettered by ``error`` (see :func:`dead_letter`)."""
    actor_name, args = _ACTOR_CALLS[queue]
    dead_letter(broker, raising(error), queue=queue, actor_name=actor_name, calls=[args(i) for i in range(n)])
