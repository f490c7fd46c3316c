"""Waiting until an in-process dramatiq worker on RabbitMQ has finished everything.

dramatiq's ``RabbitmqBroker.join`` counts only the *ready* messages of a queue (a passive
declare cannot see the unacked ones) and needs ten empty polls 100 ms apart per queue: a
second per queue per call, and still blind to what a worker holds. A test whose every enqueue
goes through one broker object (``tests/integration/conftest.py``'s ``System``) can count
instead: :class:`PendingMessages` adds one per message published and takes one off per message
acked or rejected, so zero means every published message (retries and delayed messages
included: each is a message of its own, published and acked) has been dealt with.

A message can be acked before its publisher's ``after_enqueue`` runs (the worker is fast), so
the count may read zero while the thread that published it is still busy with the message it
was handling: :meth:`drain` therefore also joins the worker (whose work and delay queues hold
that message until it is acked) and counts again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware


class PendingMessages(Middleware):
    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    def _add(self, n: int) -> None:
        with self._changed:
            self._count += n
            self._changed.notify_all()

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        self._add(1)

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        self._add(-1)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self._add(-1)

    def wait_zero(self, deadline: float) -> None:
        with self._changed:
            while self._count > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self._count} message(s) still pending on the broker")
                self._changed.wait(left)

    def drain(self, worker: dramatiq.Worker, timeout_s: float) -> None:
        """Return once every published message is acked or rejected and ``worker`` is idle."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.wait_zero(deadline)
            worker.join()
            if self.count <= 0:
                return
