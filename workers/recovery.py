"""Getting fetched-but-unfinished messages back to their queues, in seconds.

dramatiq's Redis broker keeps every fetched message in an ack set,
``<ns>:__acks__.<broker id>.<queue>``, until it is acked. Two ways a message could stay
there, unprocessed, for good (or for a long time):

1. **A broker reconnect inside a live worker** (issue 9, defect 1). When the consumer of a
   queue meets a connection error, dramatiq's ``ConsumerThread`` throws away its in-memory
   delay queue (every delayed retry it had fetched from ``<q>.DQ``) and the consumer's
   prefetched messages, without requeueing them: Redis is down, so it could not. When Redis
   comes back the ids are still in *this* worker's ack set, and since the worker keeps
   beating, dramatiq's maintenance never treats them as a dead worker's. They would run only
   after the worker restarts.

   :class:`RecoveringRedisBroker` therefore gives each new consumer a first step: before its
   first fetch it moves every id in this process's ack set for that queue that this process
   no longer holds in memory back to the queue (dramatiq's own ``requeue`` command: atomic,
   only ids still in the ack set, only messages that still exist). "Held" means handed to a
   worker thread (running, or waiting on the work queue) and not acked/nacked/requeued yet;
   delayed messages are never held across a consumer restart (dramatiq drops or requeues
   them when it closes the consumer). The first consumer of a process finds an empty ack set
   (its broker id is new); any later one exists only because the previous one was dropped.

2. **A dead worker** (defect 2). dramatiq returns a dead broker's ack sets to their queues
   in "maintenance", which it runs on a random 1 in 1,000 commands, and only once the broker
   has not beaten for ``heartbeat_timeout`` (60 s by default): at idle poll rates that took
   8–19 minutes. Here maintenance is deterministic: every worker runs it for every queue and
   delay queue every :data:`MAINTENANCE_INTERVAL_S` (:class:`Recovery`), the random kind is
   off (``maintenance_chance=0``), and the heartbeat timeout is :data:`HEARTBEAT_TIMEOUT_MS`.
   The same thread refreshes this worker's broker heartbeat at that interval whatever its
   consumers are doing, so a live worker is never mistaken for a dead one.

   **Bound:** a message held by a worker that died is back on its queue within
   ``HEARTBEAT_TIMEOUT_MS + MAINTENANCE_INTERVAL_S`` (20 s + 5 s) as long as one worker
   runs, and is fetched within a second after that.

   After a broker outage every heartbeat in Redis is stale, live workers' included, so a
   worker skips dead-worker maintenance until it has been connected again for a full
   heartbeat timeout and Redis itself has been up that long (by then every live worker has
   beaten again). Otherwise a restarted Redis would hand live workers' messages to others.

3. **A retry enqueued during an outage** (found by the fault suite in CI). dramatiq's
   ``Retries`` enqueues the retry from ``after_process_message``; when the broker is down
   that enqueue raises, ``Broker.emit_after`` logs and swallows the error, and the worker
   thread then acks the original, retrying the ack until the broker is back. The retry was
   never written, the original is gone: the work waited for the 15-minute overdue-retry
   reconciliation. :class:`DurableRetries` keeps dramatiq's policy and retries the enqueue
   itself until the broker takes it, exactly as dramatiq already does for the ack, so the
   ack never runs before the retry exists. If the worker dies meanwhile the original is
   still in its ack set and (2) returns it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import dq_name
from dramatiq.errors import BrokerConnectionError, ConnectionClosed
from dramatiq.middleware import Retries

from workers.redis_replies import text

log = logging.getLogger("parcelhook.recovery")

#: Longest pause between two polls of an empty ready queue (dramatiq's default: 1 s).
IDLE_POLL_MAX_MS = 50
#: A broker id that has not beaten for this long is a dead worker (dramatiq's default: 60 s).
HEARTBEAT_TIMEOUT_MS = 20_000
#: Each worker beats and runs maintenance this often.
MAINTENANCE_INTERVAL_S = 5.0
#: At most this many ids per ``requeue`` command.
REQUEUE_CHUNK = 500
#: Pause between two tries of a retry's enqueue while the broker is unreachable.
ENQUEUE_RETRY_DELAY_S = 1.0
#: What an unreachable broker raises on enqueue (Redis: raw redis-py errors; RabbitMQ: dramatiq's).
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError)


class RecoveringRedisBroker(RedisBroker):
    """A :class:`RedisBroker` whose consumers return stranded messages when they (re)start,
    and which runs dead-worker maintenance on request (:meth:`maintain`) instead of by chance."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("heartbeat_timeout", HEARTBEAT_TIMEOUT_MS)
        kwargs.setdefault("maintenance_chance", 0)
        super().__init__(**kwargs)
        self._held: dict[str, set[str]] = {}
        self._held_lock = threading.Lock()
        self._local = threading.local()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _RecoveringConsumer

    # ------------------------------------------------------------------ held messages

    def hold(self, queue_name: str, redis_message_id: str) -> None:
        with self._held_lock:
            self._held.setdefault(queue_name, set()).add(redis_message_id)

    def release(self, queue_name: str, redis_message_ids: list[str]) -> None:
        with self._held_lock:
            held = self._held.get(queue_name)
            if held:
                held.difference_update(redis_message_ids)

    def held(self, queue_name: str) -> frozenset[str]:
        with self._held_lock:
            return frozenset(self._held.get(queue_name, ()))

    def ack_key(self, queue_name: str) -> str:
        return f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"

    def requeue_stranded(self, queue_name: str) -> int:
        """Move this process's fetched-but-no-longer-held messages of ``queue_name`` back to it.

        Safe against a worker thread acking concurrently: ``requeue`` only moves an id that
        is still in the ack set, and an ack removes it from there first."""
        fetched = [text(i) for i in self.client.smembers(self.ack_key(queue_name))]
        if not fetched:
            return 0
        held = self.held(queue_name)
        stranded = sorted(i for i in fetched if i not in held)
        for start in range(0, len(stranded), REQUEUE_CHUNK):
            self.do_requeue(queue_name, *stranded[start : start + REQUEUE_CHUNK])
        if stranded:
            log.warning(
                "requeued %d message(s) of queue %r this worker had fetched before its consumer restarted",
                len(stranded),
                queue_name,
            )
        return len(stranded)

    # ------------------------------------------------------------------ maintenance

    def _should_do_maintenance(self, command: str) -> int:
        if getattr(self._local, "maintain", False):
            return 1
        return int(super()._should_do_maintenance(command))

    def beat(self) -> None:
        """Refresh this process's broker heartbeat (any dispatched command does)."""
        for name in sorted(self.queues)[:1]:
            self.do_qsize(name)

    def maintain(self) -> None:
        """dramatiq's maintenance for every declared queue and delay queue: the ack sets of
        brokers silent for ``heartbeat_timeout`` go back to their queues; expired dead letters
        go. (``qsize`` is a read; the maintenance runs before it in the same script.)"""
        self._local.maintain = True
        try:
            for name in sorted(self.queues):
                self.do_qsize(name)
                self.do_qsize(dq_name(name))
        finally:
            self._local.maintain = False


class _RecoveringConsumer(_RedisConsumer):
    broker: RecoveringRedisBroker

    def __init__(self, broker: RecoveringRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # An empty queue is polled with a backoff that grows to ``timeout`` (dramatiq's worker
        # timeout, 1 s): a message arriving after a quiet moment waited up to a second before
        # it was fetched, twice for a notification (its event, then its send). Ready queues are
        # capped at IDLE_POLL_MAX_MS; delay queues keep the worker's timeout (their messages
        # wait seconds anyway).
        if not queue_name.endswith(".DQ"):
            timeout = min(timeout, IDLE_POLL_MAX_MS)
        super().__init__(broker, queue_name, prefetch, timeout)
        self._recovered = False

    def __next__(self) -> Any:
        if not self._recovered:
            try:
                self.broker.requeue_stranded(self.queue_name)
            except (
                redis.ConnectionError,
                redis.TimeoutError,
            ) as exc:  # still down: the thread restarts this consumer
                raise ConnectionClosed(exc) from None
            self._recovered = True
        message = super().__next__()
        # A message with an eta goes to the consumer thread's delay queue, which dramatiq
        # drops on a connection error: never "held" across a restart.
        if message is not None and message.options.get("eta") is None:
            self.broker.hold(self.queue_name, message.options["redis_message_id"])
        return message

    def ack(self, message: Any) -> None:
        try:
            super().ack(message)
        finally:
            self.broker.release(self.queue_name, [message.options["redis_message_id"]])

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)
        finally:
            self.broker.release(self.queue_name, [message.options["redis_message_id"]])

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        try:
            super().requeue(messages)
        except redis.ConnectionError as exc:
            # dramatiq's ConsumerThread.close() only swallows its own ConnectionError; a raw
            # redis one would kill the consumer thread. The ids stay in the ack set and the
            # next consumer of this queue requeues them.
            raise ConnectionClosed(exc) from None
        finally:
            self.broker.release(self.queue_name, [m.options["redis_message_id"] for m in messages])


class Recovery(dramatiq.Middleware):
    """Runs :meth:`RecoveringRedisBroker.maintain` every ``interval_s`` in each worker process."""

    def __init__(self, interval_s: float = MAINTENANCE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy_since: float | None = None  # monotonic; None: not connected (yet)
        self._failed = False  # an outage was seen since the worker booted

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        if not isinstance(broker, RecoveringRedisBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name="parcelhook-recovery", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s * 2)
            self._thread = None

    def may_maintain(self, broker: RecoveringRedisBroker, now: float) -> bool:
        """After an outage (seen by this worker, or a restarted Redis) every stored heartbeat
        is stale: wait until live workers have beaten again."""
        timeout_s = float(broker.heartbeat_timeout) / 1000
        if self._failed and (self._healthy_since is None or now - self._healthy_since < timeout_s):
            return False
        try:
            uptime = int(broker.client.info("server").get("uptime_in_seconds", timeout_s))
        except redis.ResponseError:  # INFO disabled (some managed Redis): rely on our own view
            return True
        return bool(uptime >= timeout_s)

    def step(self, broker: RecoveringRedisBroker) -> bool:
        """One beat (+ maintenance when safe). Returns whether maintenance ran."""
        now = time.monotonic()
        try:
            broker.beat()
            if self._healthy_since is None:
                self._healthy_since = now
            if self.may_maintain(broker, now):
                broker.maintain()
                return True
        except redis.RedisError as exc:
            self._failed = True
            self._healthy_since = None
            log.warning("broker maintenance failed: %s", exc)
        return False

    def _run(self, broker: RecoveringRedisBroker) -> None:
        while not self._stop.is_set():
            self.step(broker)
            self._stop.wait(self.interval_s)


class DurableRetries(Retries):
    """dramatiq's :class:`Retries` (same options, same policy), except that a retry is never
    lost to a broker outage: its enqueue is tried again every :data:`ENQUEUE_RETRY_DELAY_S`
    until the broker takes it, before the original is acked (module docstring, case 3).

    A timeout may leave a retry written twice; a twin is harmless (each actor's work is
    idempotent: the event's dedupe, the send's claim)."""

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, **outcome: Any
    ) -> None:
        """Retries' own hook, ``outcome`` (``result=``/``exception=``) passed on as given, with
        the broker wrapped so that its enqueue of the retry waits out an outage."""
        super().after_process_message(_PatientEnqueue(broker), message, **outcome)


class _PatientEnqueue:
    """The broker as :class:`Retries` sees it: ``enqueue`` waits out an unreachable broker."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        tries = 0
        while True:
            try:
                return self._broker.enqueue(message, delay=delay)
            except _UNREACHABLE as exc:
                tries += 1
                if tries == 1 or tries % 60 == 0:
                    log.warning(
                        "broker unreachable while enqueueing the retry of message %s (%s); "
                        "trying again every %.0f s, the original stays unacked until it lands",
                        message.message_id,
                        type(exc).__name__,
                        ENQUEUE_RETRY_DELAY_S,
                    )
                time.sleep(ENQUEUE_RETRY_DELAY_S)


def with_durable_retries(broker: dramatiq.Broker) -> None:
    """Swap the broker's default :class:`Retries` for :class:`DurableRetries`, in place."""
    for i, middleware in enumerate(broker.middleware):
        if type(middleware) is Retries:
            broker.middleware[i] = DurableRetries(
                max_retries=middleware.max_retries,
                min_backoff=middleware.min_backoff,
                max_backoff=middleware.max_backoff,
                retry_when=middleware.retry_when,
            )
