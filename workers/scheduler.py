"""Periodic jobs. The `scheduler` process only *enqueues* them (``run_maintenance``) on a
fixed cadence; workers run them. A Redis ``SET NX`` per tick means any number of scheduler
instances enqueue each tick once."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Settings
from store import notifications as notification_store
from store.database import utcnow

log = logging.getLogger("parcelhook.scheduler")

RECONCILE_AFTER = timedelta(minutes=2)
#: A row an attempt touched is re-enqueued when its retry is this overdue: beyond
#: send_notification's longest backoff (10 min) plus its time limit (45 s), so no live
#: retry message can still own it.
RETRY_OVERDUE_AFTER = timedelta(minutes=15)


def detect_stalls(rt: Any) -> int:
    from workers.actors import send_notification
    from workers.processing import detect_stalls as detect

    platform_events = rt.settings.platform_events_url is not None
    ids = detect(
        rt.database, now=utcnow(), stall_after=timedelta(hours=rt.settings.stall_after_h), platform_events=platform_events
    )
    for notification_id in ids:
        send_notification.send(notification_id)
    kick_platform_events(rt)
    return len(ids)


def reconcile(rt: Any) -> int:
    """Re-enqueue intents whose send message was lost (a worker died after commit, before
    enqueue) and deferred ones whose delayed message vanished; and rows whose retry is
    long overdue (its delayed message was lost or stranded). The send is idempotent: the
    claim turns a twin into a no-op (finished row) or a wait (claim in flight).
    Also publishes platform events left unpublished (lost message, broker outage)."""
    from workers.actors import send_notification

    now = utcnow()
    cutoff = now - RECONCILE_AFTER
    with rt.database.read() as conn:
        ids = notification_store.stuck(conn, status="queued", older_than=cutoff)
        ids += [
            i for i in notification_store.stuck(conn, status="deferred", older_than=cutoff)
            if _deferred_due(conn, i, cutoff)
        ]
        ids += notification_store.overdue_retries(conn, older_than=now - RETRY_OVERDUE_AFTER)
    for notification_id in ids:
        send_notification.send(notification_id)
    kick_platform_events(rt)
    return len(ids)


def kick_platform_events(rt: Any) -> bool:
    """Enqueue the platform events publisher when the feature is on and rows are pending."""
    if not rt.settings.platform_events_url:
        return False
    from store import platform_events as platform_event_store
    from workers.actors import publish_platform_events

    with rt.database.read() as conn:
        pending = platform_event_store.has_pending(conn)
    if pending:
        publish_platform_events.send()
    return pending


def _deferred_due(conn: Any, notification_id: int, cutoff: Any) -> bool:
    from store.schema import notifications

    row = conn.execute(notifications.select().where(notifications.c.id == notification_id)).first()
    if row is None or row.scheduled_for is None:
        return False
    from store.database import as_utc

    return bool(as_utc(row.scheduled_for) < cutoff)


#: When this scheduler process started (``run_forever``): the health check's start-up grace
#: (no "no live worker" before workers could have booted) counts from here.
STARTED_AT: datetime | None = None


def check_alerts(rt: Any) -> int:
    from workers.health import check

    return check(rt, started_at=STARTED_AT)


JOBS: dict[str, Callable[[Any], int]] = {
    "stalls": detect_stalls,
    "reconcile": reconcile,
    "alerts": check_alerts,
}

CADENCE_S: dict[str, int] = {"stalls": 300, "reconcile": 60, "alerts": 30}

#: Jobs the scheduler runs itself instead of enqueueing: the health check must be able to
#: notice that no worker is alive, which a job running inside a worker never could.
IN_SCHEDULER: frozenset[str] = frozenset({"alerts"})


def tick(settings: Settings, client: Any, now: float, last: dict[str, float], force: bool = False) -> list[str]:
    from workers.actors import run_maintenance

    sent = []
    for job, every in CADENCE_S.items():
        if not force and now - last.get(job, 0) < every:
            continue
        last[job] = now
        slot = int(now // every)
        if client.set(f"parcelhook:scheduler:{job}:{slot}", "1", nx=True, ex=every * 2):
            if job in IN_SCHEDULER:
                from workers.runtime import runtime

                JOBS[job](runtime())
            else:
                run_maintenance.send(job)
            sent.append(job)
    return sent


def run_forever(settings: Settings, *, once: bool = False) -> None:
    from workers.state import state_redis

    global STARTED_AT
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    STARTED_AT = datetime.now(UTC)
    client = state_redis(settings)
    last: dict[str, float] = {}
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler started: %s", ", ".join(f"{j} every {s}s" for j, s in CADENCE_S.items()))
    while not stopping:
        try:
            sent = tick(settings, client, time.time(), last, force=once)
            if sent:
                log.info("enqueued %s", ", ".join(sent))
        except Exception:  # noqa: BLE001 - a broker blip must not kill the scheduler
            log.exception("scheduler tick failed; retrying")
        if once:
            return
        time.sleep(1)
