"""Issue 9, defect 1: delayed retries held by live workers survive a Redis kill -9 + restart.

Twilio answers 500, so every SMS waits in ``notifications.DQ`` for its retry -- fetched
into the two workers' memory (dramatiq's delay queue). Redis is killed with SIGKILL and
restarted from its append-only file while the workers keep running; then Twilio recovers.
Every notification must be sent exactly once, by the same worker processes."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from tests.support.polling import wait_until
from tests.support.worker_process import MakeSmsWorkers, kill9_and_restart, recipients

pytestmark = pytest.mark.redis

ORDERS = {f"{1001 + i}": f"+1500555{1001 + i:04d}" for i in range(6)}
#: send_notification's first retry comes 10-20 s after the failure (min_backoff 10 s, jitter):
#: this leaves that plus a generous margin.
BOUND_S = 60.0


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
    sms_workers: MakeSmsWorkers,
) -> None:
    rig = sms_workers(ORDERS)
    broker_redis, twilio = rig.redis, rig.twilio
    twilio.fail_all()

    with rig.worker("worker-a.log") as a, rig.worker("worker-b.log") as b:
        rig.post_labels()

        def retries_held_by_workers() -> bool:
            sms = rig.sms()
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
        rig.wait_all_sent(within_s=BOUND_S, after="the Redis restart")
        assert a.process.poll() is None and b.process.poll() is None, (
            "the same workers did it, never restarted"
        )

    assert Counter(recipients(twilio)) == Counter(ORDERS.values()), "each customer got exactly one SMS"
    assert twilio.failed == len(ORDERS)
    assert delayed(broker_redis.url) == (0, 0)
