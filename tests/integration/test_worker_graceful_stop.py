"""A SIGTERM to the worker's whole process group stops it gracefully: sends in flight finish.

systemd (``KillMode=control-group``, its default), ``kill -TERM -<pgid>`` and supervisors that
stop a process group deliver SIGTERM to dramatiq's master *and* to each worker process; the
master forwards its own, so every worker process gets two. dramatiq reads a second SIGTERM as
"kill now": the process exited inside Twilio's call, and the SMS's outcome was unknown (the
fault suite's graceful-restart scenario found two). ``workers.middleware.GracefulStop``."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.polling import wait_until
from tests.support.worker_process import MakeSmsWorkers, recipients

pytestmark = pytest.mark.redis

ORDERS = {"3001": "+15005553001"}
#: Twilio answers the send this long after it arrives: the stop lands while it is in flight.
SLOW_S = 6.0


def test_a_process_group_sigterm_lets_the_send_in_flight_finish(sms_workers: MakeSmsWorkers) -> None:
    rig = sms_workers(ORDERS)
    rig.twilio.slow_next(1, SLOW_S)

    def worker_log() -> str:
        return (rig.var_dir / "worker.log").read_text()

    with rig.worker("worker.log") as worker:
        rig.post_labels()
        wait_until(lambda: rig.twilio.slowed == 1, timeout=30, what="the SMS is mid-send")
        os.killpg(worker.process.pid, signal.SIGTERM)  # as systemd stops a unit
        # The worker process gets this twice (directly, and forwarded by dramatiq's master), but
        # two SIGTERMs that land before its handler runs merge into one. A second stop of the
        # group while the send is still in flight is sure to be a repeat, handled as such.
        wait_until(lambda: "Shutting down..." in worker_log(), timeout=30, what="the graceful stop began")
        os.killpg(worker.process.pid, signal.SIGTERM)
        code = worker.process.wait(60)

    [sms] = rig.sms()
    assert (sms.status, sms.error_code) == ("sent", None), "the send in flight finished and was recorded"
    assert recipients(rig.twilio) == list(ORDERS.values())
    assert code == 0, f"a graceful exit, not dramatiq's kill code ({code})"
    assert "repeated SIGTERM ignored" in worker_log()
