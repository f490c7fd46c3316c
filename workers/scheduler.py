"""Periodic jobs. The `scheduler` process (``workers/clock.py``) only *enqueues* them
(``run_maintenance``) on a fixed cadence; workers run them. A job returns what it found to do
next (``Followups``) and the actor enqueues it, so this module never imports the actors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from store import notifications as notification_store
from store.database import utcnow

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = logging.getLogger("parcelhook.scheduler")

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


def reconcile_with_shippo(rt: Runtime, now: datetime | None = None) -> Followups:
    """Look quiet shipments up at Shippo (workers/shippo_reconcile.py): a lost webhook recovered.
    ``now``: the clock (tests inject one)."""
    from workers.shippo_reconcile import reconcile as run

    found = run(rt, now=now)
    return Followups(found.notification_ids, found.platform_events or platform_events_pending(rt))


def check_alerts(rt: Runtime) -> Followups:
    """The health check (workers/health.py); its start-up grace counts from ``rt.started_at``."""
    from workers.health import check

    check(rt, started_at=rt.started_at)
    return Followups()


def purge_retained(rt: Runtime, *, now: datetime | None = None) -> Followups:
    """Strip raw webhook bodies and rendered messages past their retention
    (``PARCELHOOK_RETAIN_BODIES_DAYS``, ``PARCELHOOK_RETAIN_MESSAGES_DAYS``; ``store/retention.py``),
    in bounded batches; what the per-run cap leaves is taken up by the next run."""
    from store import retention

    purged = retention.purge_expired(
        rt.database,
        now=now or utcnow(),
        bodies_days=rt.settings.retain_bodies_days,
        messages_days=rt.settings.retain_messages_days,
    )
    if any(purged.rows.values()):
        log.info(
            "retention: removed bodies of %s%s",
            ", ".join(f"{n} {table}" for table, n in purged.rows.items()),
            "" if purged.complete else " (per-run cap reached; the next run continues)",
        )
    return Followups()


JOBS: dict[str, Callable[[Runtime], Followups]] = {
    "stalls": detect_stalls,
    "reconcile": reconcile,
    "shippo": reconcile_with_shippo,
    "alerts": check_alerts,
    "retention": purge_retained,
}
