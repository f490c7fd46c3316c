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
    <p>:webhooks:recent           list  JSON accepted deliveries (status < 400), newest first, capped at 2000
    <p>:webhooks:rejected         list  JSON rejected deliveries (status >= 400), newest first, capped at 2000
    <p>:webhooks:minute:<epoch/60> hash "<merchant>\\x1f<outcome>" -> count (TTL: rate_retention_s)

Accepted and rejected deliveries are kept in separate lists, so a flood of bad-token
requests cannot push the real deliveries out of the log; :meth:`Telemetry.recent_webhooks`
merges them newest first (each entry carries its write time, ``_w`` ns, which is not
returned).

Every 503 the receiver gives is counted in ``<p>:c:webhooks_unavailable`` by its reason,
one word of :class:`UnavailableReason`: the receiver's message for a 503 starts with it
(``"broker_unreachable: …"``, see ``ingest/errors.py``), anything else counts as
``unknown``.

Writes never raise and are not lost to an outage: the receiver records a delivery even
while Redis is down (then answering 503 — often *because* Redis is down). A failed write
is kept in the process (counters and histogram buckets summed, at most
``PENDING_RECENT_CAP`` log entries per list) and written with the next write that gets
through; a Redis error is logged (at most once a minute), and for ``backoff_s`` after a
failure observations are only buffered, so a black-holed Redis cannot add a connect
timeout to every request. A process that exits during an outage loses its buffer.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, Unpack

import redis

log = logging.getLogger(__name__)

WEBHOOK_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
PROCESSING_LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
CARRIER_LAG_BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)

#: Shippo webhook event names kept as counter labels; anything else counts as "other".
SHIPPO_EVENTS = frozenset(
    {"track_updated", "transaction_created", "transaction_updated", "batch_created", "batch_purchased"}
)

RECENT_WEBHOOKS_CAP = 2000  # per list (accepted, rejected)
PENDING_RECENT_CAP = 500  # log entries per list buffered in a process while Redis is unreachable
LABEL_MAX = 64
_LSEP = "\x1f"  # between label values
_FSEP = "\x1e"  # between the label key and the histogram field

# Counter and histogram names (the Redis hash suffixes).
C_WEBHOOKS = "webhooks_received"
C_PROCESSED = "events_processed"
C_NOTIFICATIONS = "notifications"
C_UNAVAILABLE = "webhooks_unavailable"


class UnavailableReason(StrEnum):
    """Why the receiver answered 503: the dependency it could not reach (nothing else is a 503)."""

    BROKER = "broker_unreachable"
    DATABASE = "database_unreachable"
    STATE_REDIS = "state_redis_unreachable"
    UNKNOWN = "unknown"


def unavailable_reason(message: str | None) -> UnavailableReason:
    """The reason word a 503's message starts with (``"<reason>: <text>"``), else ``unknown``."""
    word = (message or "").partition(":")[0].strip()
    try:
        return UnavailableReason(word)
    except ValueError:
        return UnavailableReason.UNKNOWN


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
    webhooks_received: dict[tuple[str, str, str], int] = field(
        default_factory=dict
    )  # (merchant, event, outcome)
    events_processed: dict[tuple[str, str], int] = field(default_factory=dict)  # (actor, outcome)
    notifications: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (channel, kind, status)
    webhooks_unavailable: dict[str, int] = field(default_factory=dict)  # reason -> 503s
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


@dataclass
class _Pending:
    """Observations not yet in Redis: summed increments, newest-last log entries, TTLs."""

    incr: dict[tuple[str, str], int] = field(default_factory=dict)
    incr_float: dict[tuple[str, str], float] = field(default_factory=dict)
    pushes: dict[str, list[str]] = field(default_factory=dict)
    expires: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.incr or self.incr_float or self.pushes or self.expires)

    def hincrby(self, key: str, fld: str, n: int = 1) -> None:
        self.incr[(key, fld)] = self.incr.get((key, fld), 0) + n

    def hincrbyfloat(self, key: str, fld: str, value: float) -> None:
        self.incr_float[(key, fld)] = self.incr_float.get((key, fld), 0.0) + value

    def lpush(self, key: str, entry: str) -> None:
        entries = self.pushes.setdefault(key, [])
        entries.append(entry)
        del entries[:-PENDING_RECENT_CAP]

    def expire(self, key: str, ttl: int) -> None:
        self.expires[key] = ttl

    def merge(self, older: _Pending) -> None:
        """Put back a batch that could not be written (it is older than what is here now)."""
        for k, n in older.incr.items():
            self.incr[k] = self.incr.get(k, 0) + n
        for k, v in older.incr_float.items():
            self.incr_float[k] = self.incr_float.get(k, 0.0) + v
        for key, entries in older.pushes.items():
            merged = [*entries, *self.pushes.get(key, [])]
            self.pushes[key] = merged[-PENDING_RECENT_CAP:]
        for key, ttl in older.expires.items():
            self.expires.setdefault(key, ttl)

    def fill(self, pipe: Any) -> None:
        """Into a redis-py pipeline, or anything with its hincrby/hincrbyfloat/lpush/ltrim/expire."""
        for (key, fld), n in self.incr.items():
            pipe.hincrby(key, fld, n)
        for (key, fld), v in self.incr_float.items():
            pipe.hincrbyfloat(key, fld, v)
        for key, entries in self.pushes.items():
            pipe.lpush(key, *entries)
            pipe.ltrim(key, 0, RECENT_WEBHOOKS_CAP - 1)
        for key, ttl in self.expires.items():
            pipe.expire(key, ttl)


class WebhookObservation(TypedDict):
    """One webhook delivery as :meth:`Telemetry.webhook` and :meth:`Telemetry.take_webhook` take it
    (as keyword arguments)."""

    merchant: str
    event: str
    outcome: str
    status_code: int
    reason: str | None
    latency_s: float
    at: datetime
    test: NotRequired[bool]  # a Shippo test-mode event


@dataclass(frozen=True)
class WebhookBatch:
    """One delivery's writes (``observation``) and the writes buffered before it (``earlier``)."""

    observation: _Pending
    earlier: _Pending

    def fill(self, pipe: Any) -> None:
        self.earlier.fill(pipe)
        self.observation.fill(pipe)


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
        self._writing = False  # a thread is writing the pending observations (see _run)
        self._pending = _Pending()

    # -- keys ---------------------------------------------------------------
    def _ckey(self, name: str) -> str:
        return f"{self.prefix}:c:{name}"

    def _hkey(self, name: str) -> str:
        return f"{self.prefix}:h:{name}"

    @property
    def _recent_key(self) -> str:
        return f"{self.prefix}:webhooks:recent"

    @property
    def _rejected_key(self) -> str:
        return f"{self.prefix}:webhooks:rejected"

    def _minute_key(self, minute: int) -> str:
        return f"{self.prefix}:webhooks:minute:{minute}"

    # -- writing ------------------------------------------------------------
    def _observe(
        self, pipe: _Pending, name: str, buckets: Sequence[float], value: float, labels: Iterable[object] = ()
    ) -> None:
        if value is None or not math.isfinite(value):
            return
        value = max(0.0, float(value))
        lk = _key(labels)
        key = self._hkey(name)
        pipe.hincrby(key, f"{lk}{_FSEP}{_bucket_index(buckets, value)}", 1)
        pipe.hincrbyfloat(key, f"{lk}{_FSEP}sum", value)

    def _run(self, fill) -> None:  # type: ignore[no-untyped-def]
        """Add ``fill(pending)``'s observations to this process's pending ones and write them all
        in one pipeline; on failure keep them for the next write. Never raises.

        One writer at a time: while a thread is writing, others only add to the pending ones,
        and the writer writes again until nothing is pending (so under load a round trip
        carries many observations, and none waits for a later call)."""
        with self._lock:
            fill(self._pending)
            if self._writing:
                return
            self._writing = True
        while True:
            with self._lock:
                if time.monotonic() < self._suspended_until or not self._pending:
                    self._writing = False
                    return
                batch, self._pending = self._pending, _Pending()
            try:
                pipe = self.client.pipeline(transaction=False)
                batch.fill(pipe)
                pipe.execute()
            except BaseException as exc:  # telemetry must never break the caller
                with self._lock:
                    self._pending.merge(batch)
                    self._writing = False  # a failed write ends this round: kept for a later call
                    self._failed(exc)
                    if not isinstance(exc, Exception):
                        raise
                return

    def _failed(self, error: BaseException) -> None:
        """A write failed: suspend writes for ``backoff_s``, and say so at most once a minute (an
        Exception only). Called holding the lock."""
        now = time.monotonic()
        self._suspended_until = now + self.backoff_s
        if isinstance(error, Exception) and (now - self._last_error_log >= 60 or self._last_error_log == 0.0):
            self._last_error_log = now
            log.warning(
                "telemetry write failed (kept in this process, retried after %.1fs): %s",
                self.backoff_s,
                error,
            )

    def _webhook_fill(self, observation: WebhookObservation) -> Callable[[Any], None] | None:
        """The writes that record one webhook delivery, or None for an observation that cannot be
        recorded (logged)."""
        try:
            merchant, event, outcome = observation["merchant"], observation["event"], observation["outcome"]
            status_code, reason, at = observation["status_code"], observation["reason"], observation["at"]
            test = observation.get("test", False)
            counter_merchant = "_unknown" if status_code == 404 else merchant
            counter_event = event if event in SHIPPO_EVENTS else "other"
            entry = json.dumps(
                {
                    "merchant": _label(merchant),
                    "event": _label(event),
                    "outcome": _label(outcome),
                    "status_code": int(status_code),
                    "reason": None if reason is None else str(reason)[:500],
                    "received_at": _utc(at).isoformat(),
                    "test": bool(test),  # a Shippo test-mode event
                    "_w": time.time_ns(),
                }
            )
            minute_key = self._minute_key(_minute(at))
            recent_key = self._recent_key if int(status_code) < 400 else self._rejected_key
            cause = unavailable_reason(reason) if int(status_code) == 503 else None
        except Exception:
            log.warning("telemetry: bad webhook observation", exc_info=True)
            return None

        def fill(pipe: Any) -> None:
            pipe.hincrby(self._ckey(C_WEBHOOKS), _key((counter_merchant, counter_event, outcome)), 1)
            if cause is not None:
                pipe.hincrby(self._ckey(C_UNAVAILABLE), _key((cause,)), 1)
            self._observe(pipe, H_WEBHOOK_LATENCY, WEBHOOK_LATENCY_BUCKETS, observation["latency_s"])
            pipe.lpush(recent_key, entry)
            pipe.hincrby(minute_key, _key((counter_merchant, outcome)), 1)
            pipe.expire(minute_key, self.rate_retention_s)

        return fill

    def webhook(self, **observation: Unpack[WebhookObservation]) -> None:
        """Record one webhook delivery (accepted or rejected). One round trip; never raises."""
        fill = self._webhook_fill(observation)
        if fill is not None:
            self._run(fill)

    def take_webhook(self, **observation: Unpack[WebhookObservation]) -> WebhookBatch | None:
        """One delivery's writes plus everything pending, for the caller to send in a round trip
        of its own (the receiver's enqueue script: no round trip for telemetry). The caller then
        calls :meth:`settle`. None while writes are suspended after a failure, or for an
        observation that cannot be recorded: record with :meth:`webhook` then."""
        fill = self._webhook_fill(observation)
        if fill is None:
            return None
        writes = _Pending()
        fill(writes)
        with self._lock:
            if time.monotonic() < self._suspended_until:
                return None
            earlier, self._pending = self._pending, _Pending()
        return WebhookBatch(writes, earlier)

    def settle(self, batch: WebhookBatch, *, written: bool, error: Exception | None = None) -> None:
        """What became of a :meth:`take_webhook` batch. Not written: the pending writes it carried
        are kept for the next write and its observation is dropped (the caller records what
        really happened with :meth:`webhook`); ``error``: Redis failed, as for any failed write."""
        if written:
            return
        with self._lock:
            self._pending.merge(batch.earlier)
            if error is not None:
                self._failed(error)

    def processed(
        self, *, actor: str, outcome: str, latency_s: float | None = None, carrier_lag_s: float | None = None
    ) -> None:
        """Record one processed message: outcome ``ok`` | ``failed`` | ``duplicate``.

        ``latency_s``: received → committed; ``carrier_lag_s``: carrier scan time → received."""

        def fill(pipe: _Pending) -> None:
            pipe.hincrby(self._ckey(C_PROCESSED), _key((actor, outcome)), 1)
            if latency_s is not None:
                self._observe(pipe, H_PROCESSING_LATENCY, PROCESSING_LATENCY_BUCKETS, latency_s, (actor,))
            if carrier_lag_s is not None:
                self._observe(pipe, H_CARRIER_LAG, CARRIER_LAG_BUCKETS, carrier_lag_s)

        self._run(fill)

    def notification(self, *, channel: str, kind: str, status: str) -> None:
        self._run(lambda pipe: pipe.hincrby(self._ckey(C_NOTIFICATIONS), _key((channel, kind, status)), 1))

    # -- reading (these may raise redis errors: callers report them) ---------
    def recent_webhooks(
        self, *, merchant: str | None = None, outcome: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first, filtered; the accepted and the rejected lists (2000 entries each) merged."""
        out: list[dict[str, Any]] = []
        if limit <= 0:
            return out
        pipe = self.client.pipeline(transaction=False)
        for key in (self._recent_key, self._rejected_key):
            pipe.lrange(key, 0, RECENT_WEBHOOKS_CAP - 1)
        entries: list[dict[str, Any]] = []
        for raw in pipe.execute():
            for item in raw:
                try:
                    entry = json.loads(item)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
        # each list is newest first; a stable sort on the write time keeps that order for ties
        entries.sort(key=lambda e: -e["_w"] if isinstance(e.get("_w"), int) else 0)
        for entry in entries:
            entry.pop("_w", None)
            if merchant is not None and entry.get("merchant") != merchant:
                continue
            if outcome is not None and entry.get("outcome") != outcome:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def webhook_counts_since(
        self, since: datetime, now: datetime | None = None
    ) -> dict[tuple[str, str], int]:
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

    def rejections_since(
        self, merchant: str, outcome: str, since: datetime, now: datetime | None = None
    ) -> int:
        """How many deliveries for ``merchant`` had ``outcome`` since ``since`` (minute resolution)."""
        return self.webhook_counts_since(since, now).get((_label(merchant), _label(outcome)), 0)

    def snapshot(self) -> TelemetrySnapshot:
        """All counters and histograms as plain data (one round trip)."""
        names_c = (C_WEBHOOKS, C_PROCESSED, C_NOTIFICATIONS, C_UNAVAILABLE)
        names_h = (H_WEBHOOK_LATENCY, H_PROCESSING_LATENCY, H_CARRIER_LAG)
        pipe = self.client.pipeline(transaction=False)
        for n in names_c:
            pipe.hgetall(self._ckey(n))
        for n in names_h:
            pipe.hgetall(self._hkey(n))
        results = pipe.execute()
        counters = {n: _decode_counter(r) for n, r in zip(names_c, results[:4], strict=True)}
        wl = _decode_histograms(results[4], WEBHOOK_LATENCY_BUCKETS)
        pl = _decode_histograms(results[5], PROCESSING_LATENCY_BUCKETS)
        cl = _decode_histograms(results[6], CARRIER_LAG_BUCKETS)
        return TelemetrySnapshot(
            webhooks_received={k: v for k, v in counters[C_WEBHOOKS].items() if len(k) == 3},
            events_processed={k: v for k, v in counters[C_PROCESSED].items() if len(k) == 2},
            notifications={k: v for k, v in counters[C_NOTIFICATIONS].items() if len(k) == 3},
            webhooks_unavailable={k[0]: v for k, v in counters[C_UNAVAILABLE].items() if len(k) == 1},
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


def _decode_histograms(
    mapping: dict[bytes, bytes], buckets: tuple[float, ...]
) -> dict[tuple[str, ...], HistogramData]:
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
# written by workers.middleware.DeadLetterRecorder, read by admin.dead_letters.DeadLetters


def dead_letter_key(prefix: str, queue: str, redis_message_id: str) -> str:
    return f"{prefix}:dlq:{queue}:{redis_message_id}"
