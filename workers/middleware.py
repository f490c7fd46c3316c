"""dramatiq middleware of our own that needs nothing but dramatiq's public hooks.

:class:`DeadLetterRecorder` keeps why a message was dead-lettered. dramatiq's Redis broker
dead-letters the message bytes as they were fetched, so the FINAL error and attempt count
are never stored with the message (only the previous attempt's traceback, if it was
retried). The recorder takes the error from ``after_process_message(..., exception=)``
(through :class:`OutcomeMiddleware`, also the base of ``workers/logs.py``'s RetryLogging) and,
when the message is then nacked, writes ``{"error", "traceback", "attempts", "failed_at",
"message_id"}`` to ``<prefix>:dlq:<queue>:<redis_message_id>`` (TTL 7 days + 1 h);
:class:`admin.dead_letters.DeadLetters` reads it and deletes it on requeue/purge.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import traceback
from dataclasses import dataclass
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.common import q_name

from store.database import utcnow
from workers.telemetry import Telemetry, dead_letter_key

log = logging.getLogger(__name__)

#: dramatiq keeps dead letters 7 days; keep their failure details a little longer.
DEAD_LETTER_DETAIL_TTL_S = 7 * 86400 + 3600


@dataclass
class _Attempt:
    """One message being processed: which attempt it is, and how it failed (if it did)."""

    message_id: str
    number: int
    error: str | None = None
    traceback: str | None = None


class OutcomeMiddleware(dramatiq.Middleware):
    """A middleware told how each processed message ended: :meth:`after_outcome` gets the
    exception it raised, or ``None`` when it succeeded (dramatiq's ``after_process_message``,
    whose ``result`` no middleware here reads)."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.after_outcome(broker, message, exception)

    def after_outcome(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, exception: BaseException | None
    ) -> None:
        """Called once per processed message, after its actor returned or raised."""


class DeadLetterRecorder(OutcomeMiddleware):
    """Records why a message was dead-lettered (add it to the worker's broker). Never raises.

    The attempt is kept per message proxy from ``before_process_message`` until the message
    is acked or nacked (the same worker thread, right after processing)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._attempts: dict[int, _Attempt] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        # Retries increments options["retries"] after a failure (not for `throws`): count this
        # attempt before anyone touches it.
        attempt = _Attempt(message.message_id, int(message.options.get("retries", 0) or 0) + 1)
        with self._lock:
            self._attempts[id(message)] = attempt

    def after_outcome(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, exception: BaseException | None
    ) -> None:
        if exception is None:
            return
        with self._lock:
            attempt = self._attempts.get(id(message))
        if attempt is not None and attempt.message_id == message.message_id:
            # formatted now: holding the exception would keep its frames alive (dramatiq #351)
            attempt.error = f"{type(exception).__name__}: {exception}"
            attempt.traceback = "".join(traceback.format_exception(exception, limit=30))

    def after_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._take(message)

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        attempt = self._take(message)
        try:
            # Redis: the broker's redis_message_id; RabbitMQ has none: dramatiq's message_id
            redis_id = message.options.get("redis_message_id") or message.message_id
            if not redis_id:
                return
            if attempt is not None and attempt.error is not None:
                error: str | None = attempt.error
                tb = attempt.traceback or ""
            else:  # failed before it ran (e.g. no such actor): the broker's last traceback, if any
                tb = message.options.get("traceback") or ""
                error = tb.strip().splitlines()[-1] if tb.strip() else None
            detail = json.dumps(
                {
                    "error": None if error is None else error[:1000],
                    "traceback": tb[-8000:],
                    "attempts": attempt.number if attempt is not None else None,
                    "failed_at": utcnow().isoformat(),
                    "message_id": message.message_id,
                }
            )
            key = dead_letter_key(self.telemetry.prefix, q_name(message.queue_name), redis_id)
            self.telemetry.client.set(key, detail, ex=DEAD_LETTER_DETAIL_TTL_S)
        except Exception:
            log.warning("could not record dead-letter details", exc_info=True)

    def _take(self, message: dramatiq.MessageProxy) -> _Attempt | None:
        with self._lock:
            attempt = self._attempts.pop(id(message), None)
        return attempt if attempt is not None and attempt.message_id == message.message_id else None


class GracefulStop(dramatiq.Middleware):
    """One SIGTERM stops a worker process gracefully, however many arrive.

    dramatiq's worker process treats a *second* SIGTERM as "kill now" (``sys.exit`` while
    worker threads are mid-message). A stop of the whole process group -- systemd's default
    ``KillMode=control-group``, ``kill -TERM -<pgid>``, a supervisor stopping the group --
    delivers two: one directly, one forwarded by dramatiq's master. The worker then died
    inside a provider call, and the send's outcome became unknown (found by the fault suite's
    graceful-restart scenario). Here repeats are ignored: in-flight messages finish, as
    ``--worker-shutdown-timeout`` allows; SIGKILL still stops the process at once."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (a worker built in tests)
        dramatiqs = signal.getsignal(signal.SIGTERM)
        if not callable(dramatiqs):
            return
        stopping = threading.Event()

        def once(signum: int, frame: FrameType | None) -> None:
            if stopping.is_set():
                log.info("already stopping gracefully: repeated SIGTERM ignored (SIGKILL stops at once)")
                return
            stopping.set()
            dramatiqs(signum, frame)

        signal.signal(signal.SIGTERM, once)
