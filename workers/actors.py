"""Actors: thin and idempotent. Retry policies are declared here, on purpose:

| actor | queue | max_retries | backoff | time_limit | permanent (not retried) |
|---|---|---|---|---|---|
| process_event | events | 8 (≈ 20 min span) | 1 s → 5 min | 60 s | malformed payload |
| send_notification | notifications | 6 | 10 s → 10 min | 45 s | provider's permanent errors; exhausted → ``notification_failed`` |
| run_maintenance | maintenance | 2 | 5 s → 60 s | 300 s | — |
| publish_platform_events | maintenance | 5 | 2 s → 2 min | 120 s | — (exhausted: logged, not dead-lettered; the rows stay pending and reconciliation publishes them) |

The dramatiq defaults (20 retries over about a week) are wrong for a customer SMS: a
"delivered" text that arrives four days late is worse than none.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from domain.payload import PayloadError
from store.database import utcnow
from workers.runtime import runtime
from workers.scheduler import JOBS, Followups

log = logging.getLogger("parcelhook.workers")


class NotBound(RuntimeError):
    """A message was sent before this process bound the actors to its broker (``bind``)."""


class _Unbound(dramatiq.Broker):
    """Where the actors below wait for ``bind``: it lists them and refuses every message, so a
    process that forgot to build its broker fails loudly instead of losing what it sends.
    It is no broker: no connection, no setting, no queue."""

    def declare_queue(self, queue_name: str) -> None:
        pass

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        raise NotBound(
            f"{message.actor_name}: no broker yet; build one and bind the actors to it "
            "(workers.broker.build_broker, workers.actors.bind)"
        )


_DECLARED = _Unbound()


@dataclass(frozen=True)
class RetryPolicy:
    """One row of the module doc's table, in dramatiq's actor options (milliseconds)."""

    max_retries: int
    min_backoff: int
    time_limit: int
    max_backoff: int | None = None  # None: dramatiq's default

    def options(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


EVENTS = RetryPolicy(max_retries=8, min_backoff=1_000, max_backoff=300_000, time_limit=60_000)
NOTIFICATIONS = RetryPolicy(max_retries=6, min_backoff=10_000, max_backoff=600_000, time_limit=45_000)
EXHAUSTED = RetryPolicy(max_retries=3, min_backoff=5_000, time_limit=30_000)
MAINTENANCE = RetryPolicy(max_retries=2, min_backoff=5_000, max_backoff=60_000, time_limit=300_000)
PUBLISHING = RetryPolicy(max_retries=5, min_backoff=2_000, max_backoff=120_000, time_limit=120_000)
CALLBACKS = RetryPolicy(max_retries=8, min_backoff=1_000, max_backoff=120_000, time_limit=30_000)


def bind(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Make ``broker`` the one every actor sends to and is consumed from (and dramatiq's global
    broker, which ``dramatiq workers.main`` runs). Idempotent; a later call moves the actors on."""
    for actor in _DECLARED.actors.values():
        unknown = set(actor.options) - broker.actor_options
        if unknown:
            raise ValueError(f"{actor.actor_name}: {broker!r} has no middleware for {sorted(unknown)}")
        actor.broker = broker
        broker.declare_actor(actor)
    dramatiq.set_broker(broker)
    return broker


@dramatiq.actor(broker=_DECLARED, queue_name="events", throws=(PayloadError,), **EVENTS.options())
def process_event(merchant_slug: str, event_id: str, received_at: str, body: str) -> None:
    from workers.processing import process_event as process

    rt = runtime()
    now = utcnow()
    platform_events = rt.settings.platform_events_url is not None
    try:
        outcome = process(
            rt.database,
            merchant_slug,
            event_id,
            datetime.fromisoformat(received_at),
            body,
            now,
            platform_events=platform_events,
        )
    except Exception:
        rt.telemetry.processed(actor="process_event", outcome="failed")
        raise
    latency = (utcnow() - datetime.fromisoformat(received_at)).total_seconds()
    rt.telemetry.processed(
        actor="process_event", outcome=outcome.status, latency_s=latency, carrier_lag_s=outcome.carrier_lag_s
    )
    for notification_id in outcome.notification_ids:
        send_notification.send(notification_id)
    if outcome.platform_events:
        # after the commit; a lost message is caught up by the scheduler's reconciliation
        publish_platform_events.send()


@dramatiq.actor(
    broker=_DECLARED,
    queue_name="notifications",
    on_retry_exhausted="notification_exhausted",
    **NOTIFICATIONS.options(),
)
def send_notification(notification_id: int) -> None:
    from dramatiq.middleware import CurrentMessage

    from workers.sending import IN_FLIGHT_GRACE, SendInProgress

    message = CurrentMessage.get_current_message()
    rt = runtime()
    try:
        rt.sender.send(
            notification_id,
            on_deferred=_defer,
            on_alert=send_notification.send,
            message_id=message.message_id if message is not None else None,
        )
    except SendInProgress as exc:
        # a twin message (reconciliation, a redelivery) met a claim still in flight: look later
        raise dramatiq.Retry(str(exc), delay=int(IN_FLIGHT_GRACE.total_seconds() * 1000)) from exc


def _defer(notification_id: int, delay_ms: int) -> None:
    send_notification.send_with_options(args=(notification_id,), delay=delay_ms)


@dramatiq.actor(broker=_DECLARED, queue_name="notifications", **EXHAUSTED.options())
def notification_exhausted(message_data: dict, retry_info: dict) -> None:  # type: ignore[type-arg]
    """Retries ran out: record ``failed`` and alert the merchant (``notification_failed``)."""
    notification_id = int(message_data["args"][0])
    rt = runtime()
    for alert_id in rt.sender.give_up(notification_id, retry_info):
        send_notification.send(alert_id)


@dramatiq.actor(broker=_DECLARED, queue_name="maintenance", **MAINTENANCE.options())
def run_maintenance(job: str) -> None:
    enqueue_followups(JOBS[job](runtime()))


def enqueue_followups(followups: Followups) -> int:
    """Enqueue what a periodic job found to do (workers/scheduler.py); returns how many sends."""
    for notification_id in followups.notifications:
        send_notification.send(notification_id)
    if followups.publish_platform_events:
        publish_platform_events.send()
    return len(followups.notifications)


PUBLISH_BATCH = 500


@dramatiq.actor(broker=_DECLARED, queue_name="maintenance", **PUBLISHING.options())
def publish_platform_events() -> None:
    """Publish the platform events outbox (workers/platform_events.py). Idempotent: any number
    of these may run; publishers are serialized and each row is published (at least) once."""
    from workers.platform_events import PlatformEventsUnavailable, publish_pending

    rt = runtime()
    url = rt.settings.platform_events_url
    if not url:
        return
    try:
        published = publish_pending(rt.database, url, limit=PUBLISH_BATCH)
    except PlatformEventsUnavailable as exc:
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message is not None else 0
        if retries < publish_platform_events.options.get("max_retries", 0):
            raise  # retried with backoff
        # Not a dead letter: the rows stay pending and the scheduler's reconciliation (every
        # minute) publishes them once the broker is back.
        log.warning("platform events not published after %d retries (%s); reconciliation will", retries, exc)
        return
    if published >= PUBLISH_BATCH:
        publish_platform_events.send()  # more than one batch pending: continue in a new message


# ---------------------------------------------------------------- callbacks from `web`


@dramatiq.actor(broker=_DECLARED, queue_name="events", **CALLBACKS.options())
def record_sms_status(merchant_slug: str, message_sid: str, status: str, error_code: str | None) -> None:
    from workers.callbacks import sms_status

    # an undelivered/failed receipt may raise the merchant's notification_failed alert (once)
    for alert_id in sms_status(runtime().database, merchant_slug, message_sid, status, error_code):
        send_notification.send(alert_id)


@dramatiq.actor(broker=_DECLARED, queue_name="events", **CALLBACKS.options())
def record_sms_keyword(merchant_slug: str, phone: str, keyword: str) -> None:
    from workers.callbacks import sms_keyword

    sms_keyword(runtime().database, merchant_slug, phone, keyword)


@dramatiq.actor(broker=_DECLARED, queue_name="events", **CALLBACKS.options())
def record_email_opt_out(merchant_slug: str, address: str) -> None:
    from workers.callbacks import email_opt_out

    email_opt_out(runtime().database, merchant_slug, address)
