"""Issue 9, defect 1: delayed retries held by live workers survive a Redis kill -9 + restart.

Twilio answers 500, so every SMS waits in ``notifications.DQ`` for its retry -- fetched
into the two workers' memory (dramatiq's delay queue). Redis is killed with SIGKILL and
restarted from its append-only file while the workers keep running; then Twilio recovers.
Every notification must be sent exactly once, by the same worker processes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from config import Settings
from tests.integration.conftest import SIGNING_KEY, System
from tests.support.notify_harness import ACCOUNT_SID, AUTH_TOKEN, rows
from tests.support.polling import wait_until
from tests.support.services import RedisServer, redis_server
from tests.support.worker_process import (
    ScriptedTwilio,
    enqueue_webhook,
    kill9_and_restart,
    label_created,
    recipients,
    settings_env,
    sms_orders,
    system_for_workers,
    twilio_settings,
    worker_env,
    worker_process,
)

pytestmark = pytest.mark.redis

ORDERS = {f"{1001 + i}": f"+1500555{1001 + i:04d}" for i in range(6)}
#: send_notification's first retry comes 10-20 s after the failure (min_backoff 10 s, jitter):
#: this leaves that plus a generous margin.
BOUND_S = 60.0


@pytest.fixture()
def broker_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        # every write durable before the kill: the test is about what the workers do after
        # the restart, not about AOF's one-second window
        client = redis.Redis.from_url(server.url)
        client.config_set("appendfsync", "always")
        client.close()
        yield server


@pytest.fixture()
def twilio() -> Iterator[ScriptedTwilio]:
    with ScriptedTwilio(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


def delayed(url: str) -> tuple[int, int]:
    """(delayed messages, of them still on the ``.DQ`` list rather than in a worker's memory)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.hlen("parcelhook:notifications.DQ.msgs")), int(
            client.llen("parcelhook:notifications.DQ")
        )
    finally:
        client.close()


def test_delayed_retries_held_by_live_workers_run_after_redis_is_killed_and_restarted(
    make_system: Callable[..., System],
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    broker_redis: RedisServer,
    twilio: ScriptedTwilio,
    tmp_path: Path,
) -> None:
    system = system_for_workers(make_system, make_settings, sqlite_url)
    sms_orders(system, ORDERS)
    env = worker_env(
        broker_url=broker_redis.url,
        database_url=sqlite_url,
        var_dir=tmp_path,
        signing_key=SIGNING_KEY,
        **twilio_settings(twilio),
        **settings_env(system.settings),
    )
    twilio.fail_all()

    with (
        worker_process(env, tmp_path / "worker-a.log") as a,
        worker_process(env, tmp_path / "worker-b.log") as b,
    ):
        for ref in ORDERS:
            enqueue_webhook(broker_redis.url, "acme", label_created(ref))

        def retries_held_by_workers() -> bool:
            sms = [r for r in rows(system) if r.channel == "sms"]
            failed_once = len(sms) == len(ORDERS) and all(
                r.status == "queued" and r.attempts == 1 for r in sms
            )
            return failed_once and delayed(broker_redis.url) == (len(ORDERS), 0)

        wait_until(
            retries_held_by_workers, timeout=30, what="every SMS failed once and its retry is in a worker"
        )

        kill9_and_restart(broker_redis)
        assert delayed(broker_redis.url) == (len(ORDERS), 0), "the AOF kept the retries and the ack sets"
        twilio.heal()
        healed_at = time.monotonic()

        wait_until(
            lambda: all(r.status == "sent" for r in rows(system) if r.channel == "sms"),
            timeout=BOUND_S,
            what=f"every SMS sent within {BOUND_S:.0f} s of the restart",
        )
        print(
            f"\nall {len(ORDERS)} retries sent {time.monotonic() - healed_at:.1f} s after the Redis restart"
        )
        assert a.process.poll() is None and b.process.poll() is None, (
            "the same workers did it, never restarted"
        )

    assert Counter(recipients(twilio)) == Counter(ORDERS.values()), "each customer got exactly one SMS"
    assert twilio.failed == len(ORDERS)
    assert delayed(broker_redis.url) == (0, 0)
