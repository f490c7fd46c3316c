"""The `scheduler` process (``parcelhook scheduler``): on a fixed cadence it enqueues the
periodic jobs of ``workers/scheduler.py`` as ``run_maintenance`` messages, and runs the health
check itself. A Redis ``SET NX`` per tick means any number of scheduler instances enqueue each
tick once."""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, datetime
from typing import Any

import redis

from config import Settings
from workers.actors import bind, enqueue_followups, run_maintenance
from workers.broker import build_broker
from workers.runtime import configure, runtime
from workers.scheduler import JOBS
from workers.state import state_redis

log = logging.getLogger("parcelhook.scheduler")

CADENCE_S: dict[str, int] = {"stalls": 300, "reconcile": 60, "shippo": 60, "alerts": 30, "retention": 600}

#: Jobs the scheduler runs itself instead of enqueueing: the health check must be able to
#: notice that no worker is alive, which a job running inside a worker never could.
IN_SCHEDULER: frozenset[str] = frozenset({"alerts"})


def tick(client: redis.Redis, now: float, last: dict[str, int], force: bool = False) -> list[str]:
    """Enqueue (or run, ``IN_SCHEDULER``) every job whose current slot (``now // cadence``) this
    scheduler has not tried yet and no other scheduler claimed; returns their names.

    Each scheduler tries a slot at its first tick in it (``last`` holds the slot tried), so a
    slower loop never skips one, and when the scheduler that won a slot dies another wins the
    next one, within one cadence. (Trying a cadence after its own last try let a standby always
    try just after the active one, and take over only two cadences after its death.)"""
    sent = []
    for job, every in CADENCE_S.items():
        slot = int(now // every)
        if not force and last.get(job) == slot:
            continue
        last[job] = slot
        if client.set(f"parcelhook:scheduler:{job}:{slot}", "1", nx=True, ex=every * 2):
            if job in IN_SCHEDULER:
                enqueue_followups(JOBS[job](runtime()))
            else:
                run_maintenance.send(job)
            sent.append(job)
    return sent


def run_forever(settings: Settings, *, once: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    # the health check's start-up grace (no "no live worker" before workers could have booted)
    configure(settings, started_at=datetime.now(UTC))
    bind(build_broker(settings))
    client = state_redis(settings)
    last: dict[str, int] = {}
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler started: %s", ", ".join(f"{j} every {s}s" for j, s in CADENCE_S.items()))
    while not stopping:
        try:
            sent = tick(client, time.time(), last, force=once)
            if sent:
                log.info("enqueued %s", ", ".join(sent))
        except Exception:
            log.exception("scheduler tick failed; retrying")
        if once:
            return
        time.sleep(1)
