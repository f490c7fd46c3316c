"""Health alerts: thresholds over the broker's and the receiver's raw figures.

Run by the scheduler's ``alerts`` job (``check(rt)``), read by the ops dashboard.

Three layers, so the rules are testable without Redis:

* :func:`read_figures` reads raw numbers straight from Redis (read-only): per queue
  ``LLEN <ns>:<q>``, ``ZCARD <ns>:<q>.XQ`` and the head message's
  ``message_timestamp``; workers from ``<ns>:__heartbeats__``; webhook 401s per
  merchant from the telemetry minute buckets. ``workers/`` may not import
  ``admin/`` (docs/architecture.md, Layers), so this is a small reader of its own rather than
  ``admin.queues.QueueInspector`` (which reads the same keys, with more detail).
* :func:`evaluate` is the pure rule set: ``(figures, thresholds, now) -> [Alert]``.
* :func:`check` keeps state in Redis (active alerts, dead-letter baselines) and
  mails an alert once when it opens.

Rules (defaults in :class:`Thresholds`):

``queue_age:<queue>``
    the oldest ready message has waited more than ``queue_age_s`` (300 s).
``dead_letters:<queue>``
    the queue has MORE dead letters than its baseline. The baseline is the count
    at the first check and afterwards only ever goes DOWN (when an operator
    requeues/purges, or dramatiq expires a dead letter after 7 days). So the alert
    opens when dead letters grow and stays open until someone deals with the new
    ones -- "grew since the last check" alone would clear itself 30 s later,
    before anyone looked.
``no_worker``
    no broker process has sent a heartbeat within ``worker_seen_s`` (15 s; an idle
    dramatiq worker polls every ``worker_timeout``, 1 s by default). Caveat: dramatiq
    refreshes the heartbeat on every broker command, so a process that only
    enqueues (``web``, ``scheduler``) counts too while it is busy; and when this
    check runs inside a worker (the ``alerts`` job), that worker is alive by
    definition -- the dashboard therefore also evaluates this rule live on every
    page refresh (:func:`live_alerts`), and the scheduler should run the alerts job
    in-process (see the README/report).
``delayed_stuck:<queue>``
    workers are live, yet a delayed message (a retry's backoff, a quiet-hours deferral)
    is more than ``overdue_s`` (120 s) past its eta. A running worker moves a due message
    to its queue within about a second, so this means it is stranded -- e.g. held in a
    worker's memory that lost it on a broker reconnect (issue 9; ``workers/recovery.py``
    now requeues those, this alert is the net under it). Read from every message in
    ``<q>.DQ.msgs`` (its ``eta`` option), whether on the ``.DQ`` list or fetched.
``in_flight_stuck:<queue>``
    workers are live, yet a message has sat in a worker's ack set (fetched, not acked)
    for more than ``in_flight_s`` (600 s: twice the longest actor time limit, 5 min). The
    check remembers when it first saw each in-flight id (``in_flight_seen`` below).
    Dead workers' messages go back to their queues within 25 s (``workers/recovery.py``).
``webhook_401:<merchant>``
    at least ``rejections_401`` deliveries for one merchant answered 401
    (``bad_token`` / ``bad_signature``) within ``rejection_window_s`` (20 in
    10 min): typically a rotated webhook token or HMAC secret not yet updated in
    Shippo (or someone probing the URL).

Redis keys::

    parcelhook:health:alerts        string  JSON {key: {kind, subject, severity, message, value, since, last_seen}}
    parcelhook:health:dead_baseline hash    queue -> baseline dead-letter count
    parcelhook:health:last_check    string  ISO time of the last completed check
    parcelhook:health:mail          list    JSON alert mails, newest first (capped at 200)
    parcelhook:health:lock          string  SET NX lock so two checks never overlap
    parcelhook:health:in_flight_seen hash   "<queue>|<redis message id>" -> first seen in flight (ms)
    parcelhook:health:checker_started string epoch ms when the running scheduler's checker started

Start-up grace: ``no_worker`` stays quiet until the health checker has been up for
``startup_grace_s`` (30 s, twice the liveness window): ``make run`` starts the scheduler
and the workers together, and a worker needs a few seconds to boot and beat. The
scheduler passes its start time (``check(rt, started_at=...)``); a check without one
(a test, a one-off run) has no grace.

Alert mail (``PARCELHOOK_OPS_ALERT_EMAIL``): sent once when an alert opens (not
again while it stays open; not on close). When the workers' email channel is a
real channel (SMTP), the mail goes through it (``channel.send(OutgoingMessage)``,
``From`` = the ops address itself, since ops mail has no merchant sender). When
email is captured in the outbox (no SMTP configured), the mail is NOT written to
the outbox: outbox rows belong to a customer/merchant notification
(``outbox_messages.notification_id`` is a required foreign key) and are listed per
merchant. Instead every alert mail -- captured or sent -- is recorded in
``parcelhook:health:mail`` with how it went, and the dashboard shows that list.
A mail failure is logged and recorded; it never fails the check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Settings
from workers import redis_replies
from workers.broker import QUEUES
from workers.queue_state import QUEUE_STATE, glob_escape, head_age_s, queue_keys
from workers.rabbitmq_state import RabbitQueues

log = logging.getLogger("parcelhook.health")

ALERTS_KEY = "parcelhook:health:alerts"
BASELINE_KEY = "parcelhook:health:dead_baseline"
LAST_CHECK_KEY = "parcelhook:health:last_check"
MAIL_KEY = "parcelhook:health:mail"
LOCK_KEY = "parcelhook:health:lock"
IN_FLIGHT_SEEN_KEY = "parcelhook:health:in_flight_seen"
CHECKER_STARTED_KEY = "parcelhook:health:checker_started"
#: At most this many delayed messages are read per queue and check.
DELAYED_SCAN_CAP = 50_000
MAIL_CAP = 200

#: receiver outcomes that mean "401: the credentials did not match".
UNAUTHORIZED_OUTCOMES = ("bad_token", "bad_signature")


@dataclass(frozen=True)
class Thresholds:
    queue_age_s: float = 300.0
    worker_seen_s: float = 15.0
    rejections_401: int = 20
    rejection_window_s: int = 600
    overdue_s: float = 120.0
    in_flight_s: float = 600.0
    startup_grace_s: float = 30.0


@dataclass(frozen=True)
class QueueFigures:
    name: str
    ready: int
    dead: int
    oldest_age_s: float | None
    delayed: int = 0
    #: delayed messages whose eta passed more than ``overdue_s`` ago, and the most overdue (s)
    overdue: int = 0
    most_overdue_s: float | None = None
    in_flight: int = 0
    #: in-flight messages held longer than ``in_flight_s``, and the longest hold seen (s)
    held_too_long: int = 0
    longest_held_s: float | None = None


@dataclass(frozen=True)
class Figures:
    """Raw numbers at one moment. ``worker_last_seen_s``: seconds since each live
    broker id's last heartbeat. ``dead_baseline``: per queue (missing = first check).
    ``unauthorized``: 401 deliveries per merchant within the rejection window.
    ``checker_uptime_s``: how long the health checker has run (None: unknown, no grace)."""

    queues: tuple[QueueFigures, ...]
    worker_last_seen_s: tuple[float, ...] = ()
    dead_baseline: Mapping[str, int] = field(default_factory=dict)
    unauthorized: Mapping[str, int] = field(default_factory=dict)
    checker_uptime_s: float | None = None


@dataclass(frozen=True)
class Alert:
    key: str  # stable identity: "<kind>:<subject>" (or "<kind>")
    kind: str  # queue_age | dead_letters | no_worker | delayed_stuck | in_flight_stuck | webhook_401
    subject: str | None  # queue name or merchant slug
    severity: str  # warning | critical
    message: str  # one line an on-call person can act on
    value: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _alert(kind: str, subject: str | None, severity: str, value: float, message: str) -> Alert:
    return Alert(
        key=kind if subject is None else f"{kind}:{subject}",
        kind=kind,
        subject=subject,
        severity=severity,
        message=message,
        value=float(value),
    )


def _severity(value: float, threshold: float) -> str:
    """Past its threshold a figure is a warning; past four times it, critical."""
    return "critical" if value > 4 * threshold else "warning"


def evaluate(figures: Figures, thresholds: Thresholds, now: datetime) -> list[Alert]:
    """The alert rules; pure. ``now`` is accepted for rules that need the clock (none yet
    compare against it directly: ages arrive pre-computed) and to keep the signature stable."""
    del now  # every figure is already relative to the moment it was read
    alerts: list[Alert] = []
    for q in figures.queues:
        if q.oldest_age_s is not None and q.oldest_age_s > thresholds.queue_age_s:
            message = (
                f"Queue '{q.name}' is backing up: the oldest of {q.ready} ready messages has waited "
                f"{_age(q.oldest_age_s)} (threshold {_age(thresholds.queue_age_s)})."
            )
            severity = _severity(q.oldest_age_s, thresholds.queue_age_s)
            alerts.append(_alert("queue_age", q.name, severity, q.oldest_age_s, message))
        baseline = figures.dead_baseline.get(q.name)
        if baseline is not None and q.dead > baseline:
            new = q.dead - baseline
            message = (
                f"{new} new dead letter{'s' if new != 1 else ''} on queue '{q.name}' ({q.dead} in total): "
                "messages failed every retry. Inspect, then requeue or purge them."
            )
            alerts.append(_alert("dead_letters", q.name, "warning", new, message))
    live = [s for s in figures.worker_last_seen_s if s <= thresholds.worker_seen_s]
    starting = figures.checker_uptime_s is not None and figures.checker_uptime_s <= thresholds.startup_grace_s
    if live:
        alerts.extend(_stuck(figures, thresholds))
    elif not starting:
        message = (
            f"No live worker: no broker heartbeat in the last {_age(thresholds.worker_seen_s)}. "
            "Nothing is being processed; start the `worker` process."
        )
        alerts.append(_alert("no_worker", None, "critical", 0.0, message))
    minutes = thresholds.rejection_window_s // 60
    for merchant, n in sorted(figures.unauthorized.items()):
        if n >= thresholds.rejections_401:
            message = (
                f"{n} webhooks for merchant '{merchant}' were refused with 401 in the last {minutes} min: "
                "probably a rotated webhook token or HMAC secret that Shippo still uses the old value of."
            )
            alerts.append(_alert("webhook_401", merchant, "warning", n, message))
    return alerts


def _stuck(figures: Figures, thresholds: Thresholds) -> list[Alert]:
    """Messages that stopped moving while workers are live (see the module doc)."""
    alerts: list[Alert] = []
    for q in figures.queues:
        if q.overdue and q.most_overdue_s is not None:
            message = (
                f"{q.overdue} of {q.delayed} delayed messages on queue '{q.name}' are past their "
                f"due time (the oldest by {_age(q.most_overdue_s)}, threshold {_age(thresholds.overdue_s)}) "
                "although workers are live: they are stranded. Restarting the workers releases them."
            )
            severity = _severity(q.most_overdue_s, thresholds.overdue_s)
            alerts.append(_alert("delayed_stuck", q.name, severity, q.most_overdue_s, message))
        if q.held_too_long and q.longest_held_s is not None:
            message = (
                f"{q.held_too_long} of {q.in_flight} in-flight messages on queue '{q.name}' have been held "
                f"by workers for over {_age(thresholds.in_flight_s)} (the longest {_age(q.longest_held_s)}) "
                "without finishing although workers are live. Check the workers' logs; restarting them "
                "releases the messages."
            )
            severity = _severity(q.longest_held_s, thresholds.in_flight_s)
            alerts.append(_alert("in_flight_stuck", q.name, severity, q.longest_held_s, message))
    return alerts


def next_baseline(previous: int | None, current: int) -> int:
    """First check: the current count. Then it only goes down (see the module doc)."""
    return current if previous is None else min(previous, current)


# ---------------------------------------------------------------- reading (Redis, read-only)


def _delayed(client: Any, key: str, now_ms: int, overdue_ms: float) -> tuple[int, int, float | None]:
    """(delayed messages, overdue ones, most overdue in s) from the etas in ``<q>.DQ.msgs``."""
    import dramatiq

    encoder = dramatiq.get_encoder()
    total = overdue = 0
    most: float | None = None
    for _, blob in client.hscan_iter(key, count=1000):
        total += 1
        if total > DELAYED_SCAN_CAP:
            break
        try:
            eta = encoder.decode(blob).get("options", {}).get("eta")
        except Exception:  # noqa: S112 - an undecodable message has no known eta
            continue
        if isinstance(eta, int | float) and now_ms - eta > overdue_ms:
            overdue += 1
            late = (now_ms - eta) / 1000
            most = late if most is None else max(most, late)
    return min(total, DELAYED_SCAN_CAP), overdue, most


def in_flight_ids(client: Any, namespace: str, queues: Iterable[str]) -> dict[str, set[str]]:
    """Per queue, the ids in every worker's ack set ``<ns>:__acks__.<broker id>.<queue>``
    (SCAN, not KEYS; the ``.DQ`` ack sets are delayed messages, judged by their eta)."""
    wanted = set(queues)
    prefix = f"{namespace}:__acks__."
    out: dict[str, set[str]] = {name: set() for name in wanted}
    for raw in client.scan_iter(match=glob_escape(prefix) + "*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        _, sep, queue = key[len(prefix) :].partition(".")  # broker ids are uuid4s: no dots
        if sep and queue in wanted:
            out[queue].update(
                m.decode() if isinstance(m, bytes) else m for m in client.sscan_iter(key, count=1000)
            )
    return out


def _seen_key(queue: str, message_id: str) -> str:
    return f"{queue}|{message_id}"


def read_figures(
    client: Any,
    namespace: str,
    queues: Iterable[str],
    *,
    telemetry: Any | None,
    thresholds: Thresholds,
    now: datetime,
    dead_baseline: Mapping[str, int] | None = None,
    in_flight: Mapping[str, set[str]] | None = None,
    in_flight_seen: Mapping[str, int] | None = None,
    checker_started_ms: int | None = None,
    rabbit: RabbitQueues | None = None,
) -> Figures:
    """``in_flight_seen``: when each in-flight message was first seen (ms; by ``check``);
    one not in it counts as seen now. ``rabbit``: the queues are on RabbitMQ (``client`` is
    then the state Redis, which still holds the heartbeats and telemetry)."""
    now_ms = int(now.timestamp() * 1000)
    queues = tuple(queues)
    figures = (
        _rabbit_figures(rabbit, queues, now_ms)
        if rabbit is not None
        else _redis_figures(client, namespace, queues, thresholds, now_ms, in_flight, in_flight_seen or {})
    )
    return _with_workers_and_rejections(
        client, namespace, figures, telemetry, thresholds, now, dead_baseline, checker_started_ms
    )


def _rabbit_figures(rabbit: RabbitQueues, queues: tuple[str, ...], now_ms: int) -> list[QueueFigures]:
    """RabbitMQ's own counts (``workers/rabbitmq_state.py``). Not read there: delayed messages'
    etas and how long a message has been held (``delayed_stuck``/``in_flight_stuck`` stay quiet)."""
    return [
        QueueFigures(c.name, c.ready, c.dead, c.oldest_age_s, delayed=c.delayed, in_flight=c.in_flight or 0)
        for c in rabbit.read(queues, now_ms)
    ]


def _redis_figures(
    client: Any,
    namespace: str,
    queues: tuple[str, ...],
    thresholds: Thresholds,
    now_ms: int,
    in_flight: Mapping[str, set[str]] | None,
    seen: Mapping[str, int],
) -> list[QueueFigures]:
    script = client.register_script(QUEUE_STATE)
    if in_flight is None:
        in_flight = in_flight_ids(client, namespace, queues)
    figures = []
    for name in queues:
        keys = queue_keys(namespace, name)
        ready, _, dead, head = script(keys=keys)
        delayed, overdue, most_overdue = _delayed(client, keys[2], now_ms, thresholds.overdue_s * 1000)
        held = [(now_ms - seen.get(_seen_key(name, i), now_ms)) / 1000 for i in in_flight.get(name, ())]
        too_long = [h for h in held if h > thresholds.in_flight_s]
        figures.append(
            QueueFigures(
                name,
                int(ready),
                int(dead),
                head_age_s(head, now_ms),
                delayed=delayed,
                overdue=overdue,
                most_overdue_s=most_overdue,
                in_flight=len(held),
                held_too_long=len(too_long),
                longest_held_s=max(held) if held else None,
            )
        )
    return figures


def _with_workers_and_rejections(
    client: Any,
    namespace: str,
    figures: list[QueueFigures],
    telemetry: Any | None,
    thresholds: Thresholds,
    now: datetime,
    dead_baseline: Mapping[str, int] | None,
    checker_started_ms: int | None,
) -> Figures:
    now_ms = int(now.timestamp() * 1000)
    # 10x the threshold is plenty to tell "seen 20 s ago" from "seen just now".
    window_ms = int(max(thresholds.worker_seen_s * 10, 60) * 1000)
    from workers.heartbeat import live_workers

    workers_seen = tuple(
        age for _, age in live_workers(client, namespace, now_ms=now_ms, within_ms=window_ms)
    )
    unauthorized: dict[str, int] = {}
    if telemetry is not None:
        since = now - timedelta(seconds=thresholds.rejection_window_s)
        for (merchant, outcome), n in telemetry.webhook_counts_since(since, now).items():
            if outcome in UNAUTHORIZED_OUTCOMES:
                unauthorized[merchant] = unauthorized.get(merchant, 0) + n
    uptime = None if checker_started_ms is None else max(0.0, (now_ms - checker_started_ms) / 1000)
    return Figures(tuple(figures), workers_seen, dict(dead_baseline or {}), unauthorized, uptime)


def _load_baseline(client: Any) -> dict[str, int]:
    return _counts(client, BASELINE_KEY)


def _counts(client: Any, key: str) -> dict[str, int]:
    """A hash of whole numbers (the baseline, the first sightings), with text keys."""
    return {redis_replies.text(k): int(v) for k, v in client.hgetall(key).items()}


def stored_alerts(client: Any) -> dict[str, dict[str, Any]]:
    raw = client.get(ALERTS_KEY)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def recent_mail(client: Any, limit: int = 20) -> list[dict[str, Any]]:
    out = []
    for item in client.lrange(MAIL_KEY, 0, limit - 1):
        try:
            out.append(json.loads(item))
        except ValueError:
            continue
    return out


def last_check(client: Any) -> str | None:
    raw = client.get(LAST_CHECK_KEY)
    return raw.decode() if isinstance(raw, bytes) else raw


def live_alerts(
    client: Any,
    namespace: str,
    queues: Iterable[str],
    telemetry: Any | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
    rabbit: RabbitQueues | None = None,
) -> list[Alert]:
    """The rules evaluated right now without touching any state (for the dashboard).

    Dead-letter growth is judged against the stored baseline without moving it; in-flight
    holds against the check's stored first sightings; the start-up grace against the
    running scheduler's stored start."""
    thresholds = thresholds or Thresholds()
    now = now or datetime.now(UTC)
    started = client.get(CHECKER_STARTED_KEY)
    figures = read_figures(
        client,
        namespace,
        queues,
        telemetry=telemetry,
        thresholds=thresholds,
        now=now,
        dead_baseline=_load_baseline(client),
        in_flight_seen=_load_seen(client),
        checker_started_ms=int(started) if started else None,
        rabbit=rabbit,
    )
    return evaluate(figures, thresholds, now)


def rabbit_queues(settings: Settings | None) -> RabbitQueues | None:
    """The RabbitMQ reader when the broker is RabbitMQ (else None: the queues are in Redis)."""
    if settings is None or not settings.broker_url.startswith("amqp"):
        return None
    return RabbitQueues(settings.broker_url, settings.rabbitmq_management_url)


def _load_seen(client: Any) -> dict[str, int]:
    return _counts(client, IN_FLIGHT_SEEN_KEY)


# ---------------------------------------------------------------- the scheduled check


def _redis(rt: Any) -> Any:
    return rt.telemetry.client


def check(
    rt: Any,
    *,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
    queues: Iterable[str] = QUEUES,
    started_at: datetime | None = None,
) -> int:
    """One alert check: evaluate, store the active alerts, mail the newly opened ones.

    ``started_at``: when the checker (the scheduler process) started, for the start-up
    grace of ``no_worker``; None = no grace. Returns how many alerts are active.
    Overlapping checks are skipped (lock)."""
    thresholds = thresholds or Thresholds()
    now = now or datetime.now(UTC)
    client = _redis(rt)
    namespace = rt.settings.broker_namespace
    token = f"{time.time()}"
    if not client.set(LOCK_KEY, token, nx=True, ex=60):
        log.info("health check skipped: another check is running")
        return len(stored_alerts(client))
    try:
        queues = tuple(queues)
        previous_baseline = _load_baseline(client)
        now_ms = int(now.timestamp() * 1000)
        rabbit = rabbit_queues(rt.settings)
        in_flight = {} if rabbit is not None else in_flight_ids(client, namespace, queues)
        previous_seen = _load_seen(client)
        seen = {
            k: previous_seen.get(k, now_ms)
            for k in (_seen_key(q, i) for q, ids in in_flight.items() for i in ids)
        }
        started_ms = None if started_at is None else int(started_at.timestamp() * 1000)
        figures = read_figures(
            client,
            namespace,
            queues,
            telemetry=rt.telemetry,
            thresholds=thresholds,
            now=now,
            dead_baseline=previous_baseline,
            in_flight=in_flight,
            in_flight_seen=seen,
            checker_started_ms=started_ms,
            rabbit=rabbit,
        )
        # A queue seen for the first time gets its baseline now: pre-existing dead letters don't alert.
        baseline = {q.name: next_baseline(previous_baseline.get(q.name), q.dead) for q in figures.queues}
        alerts = evaluate(replace(figures, dead_baseline=baseline), thresholds, now)
        before = stored_alerts(client)
        stamp = now.isoformat()
        active: dict[str, dict[str, Any]] = {}
        opened: list[Alert] = []
        for alert in alerts:
            since = before.get(alert.key, {}).get("since")
            if since is None:
                opened.append(alert)
            active[alert.key] = {**alert.as_json(), "since": since or stamp, "last_seen": stamp}
        pipe = client.pipeline(transaction=True)
        pipe.set(ALERTS_KEY, json.dumps(active))
        if baseline:
            pipe.hset(BASELINE_KEY, mapping=baseline)
        pipe.set(LAST_CHECK_KEY, stamp)
        pipe.delete(IN_FLIGHT_SEEN_KEY)
        if seen:
            pipe.hset(IN_FLIGHT_SEEN_KEY, mapping=seen)
        if started_ms is not None:
            pipe.set(CHECKER_STARTED_KEY, started_ms)
        pipe.execute()
        for key in before.keys() - active.keys():
            log.info("alert closed: %s", key)
        for alert in opened:
            log.warning("alert opened: %s", alert.message)
            if rt.settings.ops_alert_email:
                _mail(rt, client, alert, rt.settings.ops_alert_email, stamp)
        return len(active)
    finally:
        if client.get(LOCK_KEY) == token.encode():
            client.delete(LOCK_KEY)


def _mail(rt: Any, client: Any, alert: Alert, to: str, stamp: str) -> None:
    subject = f"[parcelhook] {alert.severity.upper()}: {alert.message[:120]}"
    text = (
        f"{alert.message}\n\nalert: {alert.key}\nseverity: {alert.severity}\nopened: {stamp}\n\n"
        "See the ops dashboard (/ops on the admin app) for the live picture.\n"
    )
    record: dict[str, Any] = {
        "to": to,
        "subject": subject,
        "text": text,
        "alert": alert.key,
        "at": stamp,
        "via": "captured",
        "error": None,
    }
    try:
        channel = rt.sender.channels["email"]
        from workers.outbox import OutboxChannel

        if not isinstance(channel, OutboxChannel):
            from domain.vocabulary import Channel
            from notifiers.channel import OutgoingMessage

            result = channel.send(
                OutgoingMessage(
                    channel=Channel.EMAIL,
                    to=to,
                    sender=to,
                    subject=subject,
                    text=text,
                    html=None,
                    idempotency_key=f"ops-alert:{alert.key}:{stamp}",
                )
            )
            record.update(via=getattr(channel, "name", "email"), provider_id=result.provider_id)
    except Exception as exc:  # a mail failure never fails the check
        log.warning("ops alert mail for %s failed: %s", alert.key, exc)
        record.update(via="failed", error=f"{type(exc).__name__}: {exc}"[:500])
    pipe = client.pipeline(transaction=False)
    pipe.lpush(MAIL_KEY, json.dumps(record))
    pipe.ltrim(MAIL_KEY, 0, MAIL_CAP - 1)
    pipe.execute()
