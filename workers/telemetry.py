"""Shared telemetry in Redis: counters, histograms and a recent-deliveries log.

Prometheus' multiprocess mode only adds up processes on ONE host; parcelhook
runs any number of ``web``/``worker`` processes on many hosts. So every process
writes its observations into Redis (atomic ``HINCRBY``/``HINCRBYFLOAT``) and the
``admin`` app's ``/metrics`` collector reads the totals back (``snapshot()``).
Counters are therefore cluster-wide and monotonic for as long as Redis keeps
them (Prometheus copes with a reset like a process restart).

Key layout under ``prefix`` (default ``parcelhook:telemetry``)::

    <p>:c:<counter>               hash  "<label>\\x1f<label>..." -> count
    <p>:h:<histogram>             hash  "<labels>\\x1e<bucket index>|sum" -> value (count = sum of buckets)
    <p>:webhooks:recent           list  JSON deliveries, newest first, capped at 2000
    <p>:webhooks:minute:<epoch/60> hash "<merchant>\\x1f<outcome>" -> count (TTL: rate_retention_s)

Writes never raise: the receiver records a delivery even while Redis is down
(then answering 503), so a Redis error is logged (at most once a minute) and
swallowed, and telemetry writes are skipped for ``backoff_s`` after a failure
so a black-holed Redis cannot add a connect timeout to every request.

Label cardinality: label values are truncated to 64 characters. The
``event`` label of the webhook counter is folded to ``other`` unless it is a
known Shippo event, and the merchant label of a 404 (unknown merchant, the
slug comes from an unauthenticated URL) is folded to ``_unknown``; the
recent-deliveries log keeps the raw (truncated) values.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dramatiq
import redis
from dramatiq.common import q_name

log = logging.getLogger(__name__)

WEBHOOK_LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROCESSING_LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
CARRIER_LAG_BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)

#: Shippo webhook event names kept as counter labels; anything else counts as "other".
SHIPPO_EVENTS = frozenset(
    {"track_updated", "transaction_created", "transaction_updated", "batch_created", "batch_purchased"}
)

RECENT_WEBHOOKS_CAP = 2000
LABEL_MAX = 64
_LSEP = "\x1f"  # between label values
_FSEP = "\x1e"  # between the label key and the histogram field

# Counter and histogram names (the Redis hash suffixes).
C_WEBHOOKS = "webhooks_received"
C_PROCESSED = "events_processed"
C_NOTIFICATIONS = "notifications"
H_WEBHOOK_LATENCY = "webhook_latency"
H_PROCESSING_LATENCY = "processing_latency"
H_CARRIER_LAG = "carrier_lag"


@dataclass(frozen=True)
class HistogramData:
    """One histogram series. ``counts`` are per bucket (NOT cumulative), with one
    extra trailing slot for observations above the last bound (+Inf)."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]`` as Prometheus wants it."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            out.append((_fmt_bound(bound), running))
        out.append(("+Inf", self.count))
        return out


@dataclass(frozen=True)
class TelemetrySnapshot:
    webhooks_received: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (merchant, event, outcome)
    events_processed: dict[tuple[str, str], int] = field(default_factory=dict)  # (actor, outcome)
    notifications: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (channel, kind, status)
    webhook_latency: HistogramData | None = None
    processing_latency: dict[str, HistogramData] = field(default_factory=dict)  # by actor
    carrier_lag: HistogramData | None = None


def _fmt_bound(bound: float) -> str:
    return repr(float(bound))


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace(_LSEP, " ").replace(_FSEP, " ")[:LABEL_MAX]


def _key(labels: Iterable[object]) -> str:
    return _LSEP.join(_label(v) for v in labels)


def _bucket_index(buckets: Sequence[float], value: float) -> int:
    for i, bound in enumerate(buckets):
        if value <= bound:
            return i
    return len(buckets)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _minute(at: datetime) -> int:
    return int(_utc(at).timestamp() // 60)


class Telemetry:
    """Cluster-wide counters, histograms and recent deliveries, stored in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "parcelhook:telemetry",
        *,
        rate_retention_s: int = 3 * 3600,
        backoff_s: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.rate_retention_s = rate_retention_s
        self.backoff_s = backoff_s
        self._suspended_until = 0.0
        self._last_error_log = 0.0
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------
    def _ckey(self, name: str) -> str:
        return f"{self.prefix}:c:{name}"

    def _hkey(self, name: str) -> str:
        return f"{self.prefix}:h:{name}"

    @property
    def _recent_key(self) -> str:
        return f"{self.prefix}:webhooks:recent"

    def _minute_key(self, minute: int) -> str:
        return f"{self.prefix}:webhooks:minute:{minute}"

    # -- writing ------------------------------------------------------------
    def _observe(self, pipe: redis.client.Pipeline, name: str, buckets: Sequence[float],
                 value: float, labels: Iterable[object] = ()) -> None:
        if value is None or not math.isfinite(value):
            return
        value = max(0.0, float(value))
        lk = _key(labels)
        key = self._hkey(name)
        pipe.hincrby(key, f"{lk}{_FSEP}{_bucket_index(buckets, value)}", 1)
        pipe.hincrbyfloat(key, f"{lk}{_FSEP}sum", value)

    def _run(self, fill) -> None:  # type: ignore[no-untyped-def]
        """Build one pipeline with ``fill(pipe)`` and send it; never raises."""
        now = time.monotonic()
        if now < self._suspended_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            fill(pipe)
            pipe.execute()
        except Exception as exc:  # telemetry must never break the caller
            with self._lock:
                self._suspended_until = time.monotonic() + self.backoff_s
                if now - self._last_error_log >= 60 or self._last_error_log == 0.0:
                    self._last_error_log = now
                    log.warning("telemetry write failed (dropping observations for %.1fs): %s",
                                self.backoff_s, exc)

    def webhook(self, *, merchant: str, event: str, outcome: str, status_code: int,
                reason: str | None, latency_s: float, at: datetime) -> None:
        """Record one webhook delivery (accepted or rejected). One round trip; never raises."""
        try:
            counter_merchant = "_unknown" if status_code == 404 else merchant
            counter_event = event if event in SHIPPO_EVENTS else "other"
            entry = json.dumps({
                "merchant": _label(merchant), "event": _label(event), "outcome": _label(outcome),
                "status_code": int(status_code), "reason": None if reason is None else str(reason)[:500],
                "received_at": _utc(at).isoformat(),
            })
            minute_key = self._minute_key(_minute(at))
        except Exception:
            log.warning("telemetry: bad webhook observation", exc_info=True)
            return

        def fill(pipe: redis.client.Pipeline) -> None:
            pipe.hincrby(self._ckey(C_WEBHOOKS), _key((counter_merchant, counter_event, outcome)), 1)
            self._observe(pipe, H_WEBHOOK_LATENCY, WEBHOOK_LATENCY_BUCKETS, latency_s)
            pipe.lpush(self._recent_key, entry)
            pipe.ltrim(self._recent_key, 0, RECENT_WEBHOOKS_CAP - 1)
            pipe.hincrby(minute_key, _key((counter_merchant, outcome)), 1)
            pipe.expire(minute_key, self.rate_retention_s)

        self._run(fill)

    def processed(self, *, actor: str, outcome: str, latency_s: float | None = None,
                  carrier_lag_s: float | None = None) -> None:
        """Record one processed message: outcome ``ok`` | ``failed`` | ``duplicate``.

        ``latency_s``: received → committed; ``carrier_lag_s``: carrier scan time → received."""

        def fill(pipe: redis.client.Pipeline) -> None:
            pipe.hincrby(self._ckey(C_PROCESSED), _key((actor, outcome)), 1)
            if latency_s is not None:
                self._observe(pipe, H_PROCESSING_LATENCY, PROCESSING_LATENCY_BUCKETS, latency_s, (actor,))
            if carrier_lag_s is not None:
                self._observe(pipe, H_CARRIER_LAG, CARRIER_LAG_BUCKETS, carrier_lag_s)

        self._run(fill)

    def notification(self, *, channel: str, kind: str, status: str) -> None:
        self._run(lambda pipe: pipe.hincrby(self._ckey(C_NOTIFICATIONS), _key((channel, kind, status)), 1))

    # -- reading (these may raise redis errors: callers report them) ---------
    def recent_webhooks(self, *, merchant: str | None = None, outcome: str | None = None,
                        limit: int = 100) -> list[dict]:
        """Newest first, filtered; scans at most the capped list (2000 entries)."""
        out: list[dict] = []
        if limit <= 0:
            return out
        raw = self.client.lrange(self._recent_key, 0, RECENT_WEBHOOKS_CAP - 1)
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                continue
            if merchant is not None and entry.get("merchant") != merchant:
                continue
            if outcome is not None and entry.get("outcome") != outcome:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def webhook_counts_since(self, since: datetime, now: datetime | None = None) -> dict[tuple[str, str], int]:
        """Deliveries per (merchant, outcome) in the whole minutes from ``since`` up to ``now``.

        Minute resolution; reaches back at most ``rate_retention_s``. Used by the
        alert checks ("401 spike for a merchant") without knowing the merchants."""
        now = now or datetime.now(UTC)
        first = max(_minute(since), _minute(now) - self.rate_retention_s // 60)
        last = _minute(now)
        pipe = self.client.pipeline(transaction=False)
        for m in range(first, last + 1):
            pipe.hgetall(self._minute_key(m))
        totals: dict[tuple[str, str], int] = {}
        for mapping in pipe.execute():
            for k, v in mapping.items():
                parts = k.decode().split(_LSEP)
                if len(parts) != 2:
                    continue
                key = (parts[0], parts[1])
                totals[key] = totals.get(key, 0) + int(v)
        return totals

    def rejections_since(self, merchant: str, outcome: str, since: datetime,
                         now: datetime | None = None) -> int:
        """How many deliveries for ``merchant`` had ``outcome`` since ``since`` (minute resolution)."""
        return self.webhook_counts_since(since, now).get((_label(merchant), _label(outcome)), 0)

    def snapshot(self) -> TelemetrySnapshot:
        """All counters and histograms as plain data (one round trip)."""
        names_c = (C_WEBHOOKS, C_PROCESSED, C_NOTIFICATIONS)
        names_h = (H_WEBHOOK_LATENCY, H_PROCESSING_LATENCY, H_CARRIER_LAG)
        pipe = self.client.pipeline(transaction=False)
        for n in names_c:
            pipe.hgetall(self._ckey(n))
        for n in names_h:
            pipe.hgetall(self._hkey(n))
        results = pipe.execute()
        counters = {n: _decode_counter(r) for n, r in zip(names_c, results[:3], strict=True)}
        wl = _decode_histograms(results[3], WEBHOOK_LATENCY_BUCKETS)
        pl = _decode_histograms(results[4], PROCESSING_LATENCY_BUCKETS)
        cl = _decode_histograms(results[5], CARRIER_LAG_BUCKETS)
        return TelemetrySnapshot(
            webhooks_received={k: v for k, v in counters[C_WEBHOOKS].items() if len(k) == 3},  # type: ignore[misc]
            events_processed={k: v for k, v in counters[C_PROCESSED].items() if len(k) == 2},  # type: ignore[misc]
            notifications={k: v for k, v in counters[C_NOTIFICATIONS].items() if len(k) == 3},  # type: ignore[misc]
            webhook_latency=wl.get((), _empty(WEBHOOK_LATENCY_BUCKETS)),
            processing_latency={k[0]: v for k, v in pl.items() if len(k) == 1},
            carrier_lag=cl.get((), _empty(CARRIER_LAG_BUCKETS)),
        )


def _empty(buckets: tuple[float, ...]) -> HistogramData:
    return HistogramData(buckets, (0,) * (len(buckets) + 1), 0.0, 0)


def _split_labels(text: str) -> tuple[str, ...]:
    return tuple(text.split(_LSEP)) if text else ()


def _decode_counter(mapping: dict[bytes, bytes]) -> dict[tuple[str, ...], int]:
    return {_split_labels(k.decode()): int(v) for k, v in mapping.items()}


def _decode_histograms(mapping: dict[bytes, bytes], buckets: tuple[float, ...]) -> dict[tuple[str, ...], HistogramData]:
    raw: dict[tuple[str, ...], dict[str, bytes]] = {}
    for k, v in mapping.items():
        lk, _, fld = k.decode().rpartition(_FSEP)
        raw.setdefault(_split_labels(lk), {})[fld] = v
    out: dict[tuple[str, ...], HistogramData] = {}
    for labels, fields in raw.items():
        counts = [0] * (len(buckets) + 1)
        for fld, v in fields.items():
            if fld.isdigit() and int(fld) < len(counts):
                counts[int(fld)] = int(v)
        out[labels] = HistogramData(
            buckets=buckets,
            counts=tuple(counts),
            sum=float(fields.get("sum", b"0")),
            count=sum(counts),
        )
    return out


# -- dead-letter details --------------------------------------------------------
#: dramatiq keeps dead letters 7 days; keep their failure details a little longer.
DEAD_LETTER_DETAIL_TTL_S = 7 * 86400 + 3600


def dead_letter_key(prefix: str, queue: str, redis_message_id: str) -> str:
    return f"{prefix}:dlq:{queue}:{redis_message_id}"


class DeadLetterRecorder(dramatiq.Middleware):
    """Records why a message was dead-lettered (add it to the worker's broker).

    dramatiq's Redis broker dead-letters the message bytes as they were
    fetched, so the FINAL error and attempt count are never stored with the
    message (only the previous attempt's traceback, if it was retried). This
    middleware writes ``{"error", "traceback", "attempts", "failed_at"}`` to
    ``<prefix>:dlq:<queue>:<redis_message_id>`` (TTL 7 days + 1 h) when a
    message is nacked; :class:`admin.dead_letters.DeadLetters` reads it and
    deletes it on requeue/purge. Never raises.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        # Retries increments options["retries"] after a failure (not for `throws`);
        # count this attempt before anyone touches it.
        message._parcelhook_attempt = int(message.options.get("retries", 0) or 0) + 1

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        try:
            exc = getattr(message, "_exception", None)
            redis_id = message.options.get("redis_message_id")
            if not redis_id:
                return
            if exc is not None:
                error = f"{type(exc).__name__}: {exc}"
                tb = "".join(traceback.format_exception(exc, limit=30))
            else:
                tb = message.options.get("traceback") or ""
                error = tb.strip().splitlines()[-1] if tb.strip() else None
            detail = json.dumps({
                "error": None if error is None else error[:1000],
                "traceback": tb[-8000:],
                "attempts": getattr(message, "_parcelhook_attempt", None),
                "failed_at": datetime.now(UTC).isoformat(),
                "message_id": message.message_id,
            })
            key = dead_letter_key(self.telemetry.prefix, q_name(message.queue_name), redis_id)
            self.telemetry.client.set(key, detail, ex=DEAD_LETTER_DETAIL_TTL_S)
        except Exception:
            log.warning("could not record dead-letter details", exc_info=True)
