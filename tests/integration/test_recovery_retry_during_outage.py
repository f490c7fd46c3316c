"""A retry that falls due while Redis is down is not lost.

Found by the fault suite in CI: a send failed (Twilio 500) while Redis was down. dramatiq's
``Retries`` tried to enqueue the retry, the enqueue raised, ``emit_after`` swallowed it, and
the worker then acked the original once Redis was back: the notification stayed ``queued``
until the 15-minute overdue-retry reconciliation. Here every SMS is mid-send (Twilio hangs)
when Redis dies; Twilio then answers 500 with Redis still down, and Redis comes back from its
append-only file. Every SMS must be sent, once, within a retry's backoff and a margin."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.support.polling import wait_until
from tests.support.worker_process import MakeSmsWorkers, recipients

pytestmark = pytest.mark.redis

#: As many as the worker has threads: every send is mid-flight at once.
ORDERS = {f"{2001 + i}": f"+1500555{2001 + i:04d}" for i in range(2)}
#: Redis stays down this long after the sends failed: every retry enqueue meets it down.
OUTAGE_S = 4.0
#: send_notification's first retry comes 10-20 s after the failure; then a generous margin.
BOUND_S = 60.0


def test_a_retry_due_while_redis_is_down_runs_once_redis_is_back(sms_workers: MakeSmsWorkers) -> None:
    rig = sms_workers(ORDERS)
    broker_redis, twilio = rig.redis, rig.twilio
    twilio.hang_next(len(ORDERS))

    with rig.worker("worker.log") as worker:
        rig.post_labels()
        wait_until(lambda: len(twilio.hung) == len(ORDERS), timeout=30, what="every SMS is mid-send")

        broker_redis.process.kill()  # SIGKILL: no save; the AOF has every write
        broker_redis.process.wait(10)
        twilio.fail_hung()
        wait_until(
            lambda: all(r.status == "queued" and r.attempts == 1 for r in rig.sms()),
            timeout=30,
            what="every send failed once with Redis down",
        )
        time.sleep(OUTAGE_S)
        broker_redis.start()
        rig.wait_all_sent(within_s=BOUND_S, after="Redis came back")
        assert worker.process.poll() is None, "the same worker did it, never restarted"
        log = (rig.var_dir / "worker.log").read_text()
        assert "enqueueing the retry of message" in log, "the outage was met by the retry's enqueue"

    assert Counter(recipients(twilio)) == Counter(ORDERS.values()), "each customer got exactly one SMS"
    assert twilio.failed == len(ORDERS)
