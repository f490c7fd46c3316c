"""The dead-letter recorder (``workers/middleware.py``) learns a message's failure from dramatiq's
public ``after_process_message(..., exception=)`` hook: the final attempt's error and count,
also when the message proxy no longer holds the exception (dramatiq clears it after
processing; ``message._exception`` is dramatiq's private business)."""

from __future__ import annotations

import json
import threading
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from admin.dead_letters import DeadLetters
from tests.support.polling import running_worker, wait_until
from workers.broker import QUEUES
from workers.middleware import DeadLetterRecorder
from workers.telemetry import Telemetry, dead_letter_key

pytestmark = pytest.mark.redis


def _proxy(**options: Any) -> dramatiq.MessageProxy:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="events", actor_name="process_event", args=("acme", "ev-1"), kwargs={}, options=options
    )
    return dramatiq.MessageProxy(message)


def test_the_final_error_comes_from_the_public_hook(redis_client: redis.Redis) -> None:
    telemetry = Telemetry(redis_client)
    recorder = DeadLetterRecorder(telemetry)
    broker = StubBroker()
    message = _proxy(redis_message_id="r-1", retries=2)

    recorder.before_process_message(broker, message)
    try:
        raise RuntimeError("db down for ev-1")
    except RuntimeError as exc:
        recorder.after_process_message(broker, message, exception=exc)
    message.fail()
    message.clear_exception()  # what the proxy holds is not the recorder's source
    recorder.after_nack(broker, message)

    detail = json.loads(redis_client.get(dead_letter_key(telemetry.prefix, "events", "r-1")) or "null")
    assert detail["error"] == "RuntimeError: db down for ev-1"
    assert detail["attempts"] == 3
    assert "db down for ev-1" in detail["traceback"] and "Traceback" in detail["traceback"]
    assert detail["message_id"] == message.message_id


def test_an_acked_message_leaves_nothing_behind(redis_client: redis.Redis) -> None:
    telemetry = Telemetry(redis_client)
    recorder = DeadLetterRecorder(telemetry)
    broker = StubBroker()
    message = _proxy(redis_message_id="r-2")
    recorder.before_process_message(broker, message)
    recorder.after_process_message(broker, message, exception=RuntimeError("retried later"))
    recorder.after_ack(broker, message)  # Retries re-enqueued it: this copy is acked
    assert recorder._attempts == {}
    assert redis_client.get(dead_letter_key(telemetry.prefix, "events", "r-2")) is None


def test_a_real_worker_records_the_last_of_several_attempts(
    redis_url: str, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(url=redis_url, namespace="parcelhook")
    broker.add_middleware(DeadLetterRecorder(Telemetry(redis_client)))
    attempts: list[int] = []
    lock = threading.Lock()

    def flaky(event_id: str) -> None:
        with lock:
            attempts.append(len(attempts) + 1)
            n = len(attempts)
        raise RuntimeError(f"attempt {n} failed for {event_id}")

    actor = dramatiq.actor(
        broker=broker,
        queue_name="events",
        actor_name="process_event",
        max_retries=2,
        min_backoff=10,
        max_backoff=20,
    )(flaky)
    actor.send("ev-9")
    try:
        with running_worker(broker):
            wait_until(lambda: broker.client.zcard("parcelhook:events.XQ") == 1, what="one dead letter")
    finally:
        broker.close()
    [letter] = DeadLetters(redis_client, "parcelhook", QUEUES).list("events", 10)
    assert (letter.attempts, letter.last_error) == (3, "RuntimeError: attempt 3 failed for ev-9")
