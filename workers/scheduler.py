"""Periodic jobs. The `scheduler` process (``workers/clock.py``) only *enqueues* them
(``run_maintenance``) on a fixed cadence; workers run them. A job returns what it found to do
next (``Followups``) and the actor enqueues it, so this module never imports the actors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from store import notifications as notification_store
from store.database import utcnow

if TYPE_CHECKING:
    from workers.runtime import Runtime

RECONCILE_AFTER = timedelta(minutes=2)
#: A row an attempt touched is re-enqueued when its retry is this overdue: beyond
#: send_notification's longest backoff (10 min) plus its time limit (45 s), so no live
#: retry message can still own it.
RETRY_OVERDUE_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Followups:
    """What a job found to do next: notifications to send, and whether platform events wait
    for the publisher. ``workers.actors.enqueue_followups`` enqueues them."""

    notifications: tuple[int, ...] = ()
    publish_platform_events: bool = False


def detect_stalls(rt: Runtime) -> Followups:
    from workers.processing import detect_stalls as detect

    platform_events = rt.settings.platform_events_url is not None
    ids = detect(
        rt.database,
        now=utcnow(),
        stall_after=timedelta(hours=rt.settings.stall_after_h),
        platform_events=platform_events,
    )
    return Followups(tuple(ids), platform_events_pending(rt))


def reconcile(rt: Runtime) -> Followups:
    """Re-enqueue intents whose send message was lost (a worker died after commit, before
    enqueue) and deferred ones whose delayed message vanished; and rows whose retry is
    long overdue (its delayed message was lost or stranded). The send is idempotent: the
    claim turns a twin into a no-op (finished row) or a wait (claim in flight).
    Also publishes platform events left unpublished (lost message, broker outage)."""
    now = utcnow()
    cutoff = now - RECONCILE_AFTER
    with rt.database.read() as conn:
        ids = notification_store.stuck(conn, status="queued", older_than=cutoff)
        ids += notification_store.deferred_overdue(conn, cutoff=cutoff)
        ids += notification_store.overdue_retries(conn, older_than=now - RETRY_OVERDUE_AFTER)
    return Followups(tuple(ids), platform_events_pending(rt))


def platform_events_pending(rt: Runtime) -> bool:
    """Whether the platform events publisher has work: the feature is on and rows are pending."""
    if not rt.settings.platform_events_url:
        return False
    from store import platform_events as platform_event_store

    with rt.database.read() as conn:
        return bool(platform_event_store.has_pending(conn))


def check_alerts(rt: Runtime) -> Followups:
    """The health check (workers/health.py); its start-up grace counts from ``rt.started_at``."""
    from workers.health import check

    check(rt, started_at=rt.started_at)
    return Followups()


JOBS: dict[str, Callable[[Runtime], Followups]] = {
    "stalls": detect_stalls,
    "reconcile": reconcile,
    "alerts": check_alerts,
}
