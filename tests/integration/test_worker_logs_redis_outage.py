"""No webhook body in a worker's logs, even when Redis drops while a message is being acked.

A real `dramatiq workers.main` process, its own Redis (killed and restarted), SQLite shared
with the test. The webhook carries a planted customer email; processing is held on the
database's write lock while Redis is killed, so the worker finishes the message with no
broker to ack it on — dramatiq's ``ConsumerThread(events)`` then logs
``Failed to post_process_message(<message>)`` until Redis is back. Every line the worker
process writes (stdout and stderr) is searched for the email.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import System
from tests.support.notify_harness import merchant_profile
from tests.support.polling import wait_until
from tests.support.services import RedisServer
from tests.support.worker_process import (
    enqueue_webhook,
    env_for_workers,
    label_created,
    worker_process,
)

pytestmark = pytest.mark.redis

PLANTED = "planted.customer.7f3a@example.org"


def _held(url: str, queue: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.scard(k)) for k in client.scan_iter(match=f"parcelhook:__acks__.*.{queue}"))
    except redis.RedisError:
        return -1
    finally:
        client.close()


def test_a_redis_outage_during_the_ack_logs_no_webhook_body(
    worker_system: System,
    broker_redis: RedisServer,
    tmp_path: Path,
) -> None:
    system = worker_system
    system.create_merchant(**merchant_profile())
    body = json.loads(label_created("1001"))
    body["data"]["metadata"] = f"Order 1001 for {PLANTED}"
    raw = json.dumps(body).encode()
    env = env_for_workers(system, broker_url=broker_redis.url, var_dir=tmp_path)
    log = tmp_path / "worker.log"
    database = system.settings.database_url.removeprefix("sqlite:///")

    with worker_process(env, log, threads=1) as worker:
        lock = sqlite3.connect(database, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the worker's write transaction waits behind this one
        try:
            enqueue_webhook(broker_redis.url, "acme", raw)
            wait_until(
                lambda: _held(broker_redis.url, "events") == 1,
                timeout=30,
                what="the worker to hold the message",
            )
            broker_redis.process.kill()  # Redis drops while the message is being processed
            broker_redis.process.wait(10)
        finally:
            lock.rollback()
            lock.close()
        wait_until(
            lambda: "post_process_message" in worker.output(),
            timeout=60,
            what="the worker to fail acking the message",
        )
        broker_redis.start()
        wait_until(
            lambda: _held(broker_redis.url, "events") == 0,
            timeout=60,
            what="the ack to go through once Redis is back",
        )
        worker.stop()
    output = worker.output()
    lines = output.splitlines()
    leaked = [line for line in lines if PLANTED in line or PLANTED.split("@")[0] in line]
    assert leaked == [], "\n".join(leaked[:5])
    assert any("Failed to post_process_message(process_event[" in line for line in lines), output[-3000:]
