"""Queue inspection: the ONE place that reads dramatiq's broker state.

Used by the ops API, ``/metrics``, the CLI and the dashboard. Strictly
read-only: it never writes a broker key (no maintenance, no heartbeat).

Redis broker layout (dramatiq 2.x, ``brokers/redis/dispatch.lua``), with
``<ns>`` the broker namespace (``parcelhook``)::

    <ns>:<q>                        list  ids ready to fetch (head = next)
    <ns>:<q>.msgs                   hash  id -> encoded message (ready + fetched-not-acked)
    <ns>:<q>.DQ / <q>.DQ.msgs       the delay queue (retry backoff, send_with_options(delay=))
    <ns>:<q>.XQ                     zset  dead-lettered ids, score = dead-lettered at (ms)
    <ns>:<q>.XQ.msgs                hash  id -> encoded message
    <ns>:__acks__.<worker>.<q>      set   ids fetched by <worker> and not acked yet
    <ns>:__heartbeats__             zset  broker id -> last command (ms)

What the numbers mean:

``ready``
    ``LLEN <ns>:<q>`` — waiting to be fetched by a worker.
``delayed``
    ``HLEN <ns>:<q>.DQ.msgs`` — every delayed message, whether still in the
    ``.DQ`` list or already prefetched by a worker (a running worker fetches
    delayed messages at once and holds them in memory until their eta, so
    ``LLEN <q>.DQ`` alone would read ~0 while a worker runs).
``dead``
    ``ZCARD <ns>:<q>.XQ`` (dramatiq drops dead letters after 7 days).
``in_flight``
    the sum of ``SCARD`` over ``<ns>:__acks__.*.<q>`` (found with ``SCAN``,
    never ``KEYS``): fetched but not acked, i.e. running OR prefetched by a
    worker. It includes messages held by a worker that died; dramatiq's
    maintenance returns those to the queue after the heartbeat timeout.
    Delayed messages held by workers are NOT counted here (they are in
    ``delayed``).
``oldest_age_s``
    now minus ``message_timestamp`` of the head of the ready list (None when
    nothing is ready). ``message_timestamp`` is when the message was first
    enqueued, so a retried message keeps its original age.

``workers`` are the broker ids in ``__heartbeats__`` seen within the heartbeat
timeout (60 s by default). Caveat: dramatiq refreshes the heartbeat on EVERY
broker command, so a ``web`` process that just enqueued also appears; an idle
worker polls at least once a second per queue, so live workers never drop out.
One id is one worker process (all its threads share the broker id).

RabbitMQ (``PARCELHOOK_BROKER_URL=amqp://…``): :class:`RabbitQueueInspector` reads the same
figures from RabbitMQ itself (``workers/rabbitmq_state.py`` says how, and what each mode can
see; ``None`` where the broker cannot tell), and the workers from the heartbeats every worker
writes to the state Redis. :func:`inspector_for` picks the inspector for the app's settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from config import Settings
from workers.broker import QUEUES
from workers.heartbeat import live_workers
from workers.queue_state import QUEUE_STATE, glob_escape, head_age_s, queue_keys
from workers.rabbitmq_state import RabbitQueues

DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000  # workers beat every 2 s (workers/heartbeat.py)


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    delayed: int
    dead: int
    in_flight: int | None  # None: the broker cannot tell (RabbitMQ without the management API)
    oldest_age_s: float | None
    consumers: int | None = None  # RabbitMQ's consumers of the queue; None on Redis (no such record)


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    last_seen_s: float  # seconds since its last heartbeat


def _now_ms() -> int:
    return int(time.time() * 1000)


class QueueInspector:
    """Read-only view of the Redis broker's queues and workers."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "parcelhook",
        queues: Iterable[str] = QUEUES,
        *,
        heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.queue_names: tuple[str, ...] = tuple(queues)
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._state = client.register_script(QUEUE_STATE)

    def key(self, suffix: str) -> str:
        return f"{self.namespace}:{suffix}"

    def _in_flight(self) -> dict[str, int]:
        """SCARD summed per queue over every ``__acks__.<worker>.<queue>`` set (SCAN, not KEYS)."""
        prefix = self.key("__acks__.")
        keys = [
            k.decode() if isinstance(k, bytes) else k
            for k in self.client.scan_iter(match=glob_escape(prefix) + "*", count=1000)
        ]
        if not keys:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.scard(k)
        totals: dict[str, int] = {}
        for k, n in zip(keys, pipe.execute(), strict=True):
            # <worker id>.<queue>; worker ids are uuid4s (no dots), queue names may have dots.
            _, sep, queue = k[len(prefix) :].partition(".")
            if sep:
                totals[queue] = totals.get(queue, 0) + int(n)
        return totals

    def queue(
        self, name: str, *, now_ms: int | None = None, in_flight: dict[str, int] | None = None
    ) -> QueueStats:
        now_ms = _now_ms() if now_ms is None else now_ms
        ready, delayed, dead, head = self._state(keys=queue_keys(self.namespace, name))
        age = head_age_s(head, now_ms)
        oldest = None if age is None else round(age, 3)
        flights = self._in_flight() if in_flight is None else in_flight
        return QueueStats(
            name=name,
            ready=int(ready),
            delayed=int(delayed),
            dead=int(dead),
            in_flight=flights.get(name, 0),
            oldest_age_s=oldest,
        )

    def queues(self, now_ms: int | None = None) -> list[QueueStats]:
        now_ms = _now_ms() if now_ms is None else now_ms
        flights = self._in_flight()
        return [self.queue(name, now_ms=now_ms, in_flight=flights) for name in self.queue_names]

    def workers(self, now_ms: int | None = None) -> list[WorkerInfo]:
        """Live broker processes (heartbeat within the timeout), most recently seen first."""
        now_ms = _now_ms() if now_ms is None else now_ms
        return [
            WorkerInfo(id=worker_id, last_seen_s=age)
            for worker_id, age in live_workers(
                self.client, self.namespace, now_ms=now_ms, within_ms=self.heartbeat_timeout_ms
            )
        ]

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        """The contract's ``GET /api/ops/queues`` body."""
        now_ms = _now_ms() if now_ms is None else now_ms
        return {
            # the contract's fields only (``consumers`` is for Python callers)
            "queues": [{k: v for k, v in asdict(q).items() if k != "consumers"} for q in self.queues(now_ms)],
            "workers": [asdict(w) for w in self.workers(now_ms)],
        }


class RabbitQueueInspector(QueueInspector):
    """The same view of a RabbitMQ broker: queue figures from RabbitMQ (its management API
    when ``management_url`` is given, passive declares otherwise), workers from the
    heartbeats in the state Redis ``client``."""

    def __init__(
        self,
        client: redis.Redis,
        amqp_url: str,
        management_url: str | None = None,
        namespace: str = "parcelhook",
        queues: Iterable[str] = QUEUES,
        *,
        heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    ) -> None:
        super().__init__(client, namespace, queues, heartbeat_timeout_ms=heartbeat_timeout_ms)
        self.rabbit = RabbitQueues(amqp_url, management_url)

    def queue(
        self, name: str, *, now_ms: int | None = None, in_flight: dict[str, int] | None = None
    ) -> QueueStats:
        [stats] = self._read([name], now_ms)
        return stats

    def queues(self, now_ms: int | None = None) -> list[QueueStats]:
        return self._read(self.queue_names, now_ms)

    def _read(self, names: Iterable[str], now_ms: int | None) -> list[QueueStats]:
        now_ms = _now_ms() if now_ms is None else now_ms
        return [
            QueueStats(c.name, c.ready, c.delayed, c.dead, c.in_flight, c.oldest_age_s, c.consumers)
            for c in self.rabbit.read(names, now_ms)
        ]


def is_rabbitmq(settings: Settings | None) -> bool:
    return settings is not None and settings.broker_url.startswith("amqp")


def inspector_for(services: Any) -> QueueInspector:
    """The inspector of the app's broker (``services``: settings, redis, namespace, queues)."""
    settings = services.settings
    if is_rabbitmq(settings):
        return RabbitQueueInspector(
            services.redis,
            settings.broker_url,
            settings.rabbitmq_management_url,
            services.namespace,
            services.queues,
        )
    return QueueInspector(services.redis, services.namespace, services.queues)
