"""Which *workers* are alive.

dramatiq's own ``<ns>:__heartbeats__`` is refreshed by every broker command, so a busy
`web` process that only enqueues looks like a worker — and the "no live worker" alert would
stay quiet exactly while webhooks pile up. Worker processes therefore also beat in
``<ns>:__workers__`` (a sorted set: ``host:pid`` → last beat in ms) from a small thread
started when the dramatiq worker boots; nothing else writes there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
import redis

from workers.redis_replies import scored_members

log = logging.getLogger("parcelhook.heartbeat")

INTERVAL_S = 2.0
FORGET_AFTER_MS = 3_600_000  # entries of workers gone for an hour are pruned


def workers_key(namespace: str) -> str:
    return f"{namespace}:__workers__"


def _now_ms() -> int:
    return int(time.time() * 1000)


class WorkerHeartbeat(dramatiq.Middleware):
    def __init__(self, client: redis.Redis, namespace: str, interval_s: float = INTERVAL_S) -> None:
        self.client = client
        self.key = workers_key(namespace)
        self.interval_s = interval_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"  # after fork: this process's pid
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="parcelhook-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s * 2)
        try:
            self.client.zrem(self.key, self.worker_id)
        except redis.RedisError:
            log.warning("could not remove the heartbeat of %s", self.worker_id)

    def beat(self) -> None:
        now = _now_ms()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.key, {self.worker_id: now})
        pipe.zremrangebyscore(self.key, 0, now - FORGET_AFTER_MS)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:  # the broker is down: the workers can't work either
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.interval_s)


def live_workers(
    client: redis.Redis, namespace: str, *, now_ms: int | None = None, within_ms: int = 15_000
) -> list[tuple[str, float]]:
    """``(worker id, seconds since its last beat)``, most recent first."""
    now_ms = _now_ms() if now_ms is None else now_ms
    rows = client.zrevrangebyscore(workers_key(namespace), "+inf", now_ms - within_ms, withscores=True)
    return [(m, round(max(0.0, (now_ms - score) / 1000), 3)) for m, score in scored_members(rows)]
