"""Telemetry in Redis adds up across processes and never breaks its caller."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.services import free_port
from workers.telemetry import RECENT_WEBHOOKS_CAP, Telemetry

pytestmark = pytest.mark.redis

AT = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)


def deliver(
    t: Telemetry,
    merchant: str = "acme",
    outcome: str = "queued",
    status: int = 200,
    event: str = "track_updated",
    latency: float = 0.004,
    at: datetime = AT,
    reason: str | None = None,
) -> None:
    t.webhook(
        merchant=merchant,
        event=event,
        outcome=outcome,
        status_code=status,
        reason=reason,
        latency_s=latency,
        at=at,
    )


def test_counters_from_two_processes_add_up(redis_url: str) -> None:
    a = Telemetry(redis.Redis.from_url(redis_url))
    b = Telemetry(redis.Redis.from_url(redis_url))
    deliver(a)
    deliver(b)
    deliver(b, outcome="rejected", status=401, reason="bad token")
    a.processed(actor="process_event", outcome="ok", latency_s=0.2, carrier_lag_s=400)
    b.processed(actor="process_event", outcome="ok", latency_s=3.0)
    b.processed(actor="process_event", outcome="duplicate")
    a.notification(channel="email", kind="delivered", status="sent")
    b.notification(channel="email", kind="delivered", status="sent")

    for snap in (a.snapshot(), b.snapshot()):
        assert snap.webhooks_received == {
            ("acme", "track_updated", "queued"): 2,
            ("acme", "track_updated", "rejected"): 1,
        }
        assert snap.events_processed == {("process_event", "ok"): 2, ("process_event", "duplicate"): 1}
        assert snap.notifications == {("email", "delivered", "sent"): 2}
        assert snap.webhook_latency is not None and snap.webhook_latency.count == 3
        assert snap.webhook_latency.sum == pytest.approx(0.012)
        lat = snap.processing_latency["process_event"]
        assert lat.count == 2 and lat.sum == pytest.approx(3.2)
        assert snap.carrier_lag is not None and snap.carrier_lag.count == 1


def test_histogram_buckets_are_cumulative_with_inf(redis_client: redis.Redis) -> None:
    t = Telemetry(redis_client)
    for latency in (0.0005, 0.004, 0.004, 0.3, 9.0):
        deliver(t, latency=latency)
    hist = t.snapshot().webhook_latency
    assert hist is not None
    cumulative = dict(hist.cumulative())
    assert cumulative["0.001"] == 1
    assert cumulative["0.005"] == 3
    assert cumulative["0.25"] == 3
    assert cumulative["0.5"] == 4
    assert cumulative["2.5"] == 4
    assert cumulative["+Inf"] == 5


def test_an_empty_store_gives_empty_series(redis_client: redis.Redis) -> None:
    snap = Telemetry(redis_client).snapshot()
    assert snap.webhooks_received == {} and snap.processing_latency == {}
    assert snap.webhook_latency is not None and snap.webhook_latency.count == 0


def test_recent_deliveries_newest_first_filtered_and_capped(redis_client: redis.Redis) -> None:
    t = Telemetry(redis_client)
    deliver(t, merchant="acme", outcome="queued")
    deliver(t, merchant="acme", outcome="rejected", status=401, reason="bad signature")
    deliver(t, merchant="bolt", outcome="queued", at=AT + timedelta(seconds=1))

    recent = t.recent_webhooks()
    assert [(d["merchant"], d["outcome"]) for d in recent] == [
        ("bolt", "queued"),
        ("acme", "rejected"),
        ("acme", "queued"),
    ]
    assert recent[1] == {
        "merchant": "acme",
        "event": "track_updated",
        "outcome": "rejected",
        "status_code": 401,
        "reason": "bad signature",
        "received_at": "2024-05-01T10:00:30+00:00",
        "test": False,
    }
    assert [d["merchant"] for d in t.recent_webhooks(merchant="acme")] == ["acme", "acme"]
    assert [d["outcome"] for d in t.recent_webhooks(merchant="acme", outcome="rejected")] == ["rejected"]
    assert len(t.recent_webhooks(limit=1)) == 1

    pipe = redis_client.pipeline(transaction=False)
    for _ in range(RECENT_WEBHOOKS_CAP):
        pipe.lpush("parcelhook:telemetry:webhooks:recent", json.dumps({"merchant": "x"}))
    pipe.execute()
    deliver(t, merchant="last")
    assert redis_client.llen("parcelhook:telemetry:webhooks:recent") == RECENT_WEBHOOKS_CAP
    assert t.recent_webhooks(limit=1)[0]["merchant"] == "last"


def test_untrusted_labels_are_folded_in_counters(redis_client: redis.Redis) -> None:
    t = Telemetry(redis_client)
    deliver(t, merchant="no-such-merchant-1", outcome="unknown_merchant", status=404)
    deliver(t, merchant="no-such-merchant-2", outcome="unknown_merchant", status=404)
    deliver(t, event="x" * 500, outcome="ignored")
    snap = t.snapshot()
    assert snap.webhooks_received == {
        ("_unknown", "track_updated", "unknown_merchant"): 2,
        ("acme", "other", "ignored"): 1,
    }
    # the log keeps what was sent (truncated)
    assert t.recent_webhooks(limit=1)[0]["event"] == "x" * 64


def test_rejections_per_merchant_in_a_time_window(redis_client: redis.Redis) -> None:
    t = Telemetry(redis_client)
    now = datetime(2024, 5, 1, 10, 30, 10, tzinfo=UTC)
    for minutes_ago in (0, 1, 4, 20):
        deliver(t, outcome="rejected", status=401, at=now - timedelta(minutes=minutes_ago))
    deliver(t, merchant="bolt", outcome="rejected", status=401, at=now)
    deliver(t, outcome="queued", at=now)

    assert t.rejections_since("acme", "rejected", now - timedelta(minutes=5), now=now) == 3
    assert t.rejections_since("acme", "rejected", now - timedelta(hours=1), now=now) == 4
    assert t.rejections_since("bolt", "rejected", now - timedelta(minutes=5), now=now) == 1
    assert t.webhook_counts_since(now - timedelta(minutes=5), now=now) == {
        ("acme", "rejected"): 3,
        ("bolt", "rejected"): 1,
        ("acme", "queued"): 1,
    }
    ttl = redis_client.ttl(f"parcelhook:telemetry:webhooks:minute:{int(now.timestamp() // 60)}")
    assert 0 < ttl <= 3 * 3600


def test_writes_never_raise_when_redis_is_down() -> None:
    # no client-side retries: redis-py's default retry policy alone takes ~3.5 s per failed call
    down = redis.Redis(
        port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    t = Telemetry(down, backoff_s=30)
    deliver(t)
    started = time.monotonic()
    for _ in range(100):
        deliver(t)  # within the back-off: skipped without a connection attempt
    assert time.monotonic() - started < 0.05
    t.processed(actor="process_event", outcome="failed", latency_s=1.0)
    t.notification(channel="sms", kind="shipped", status="failed")
    with pytest.raises(redis.ConnectionError):
        t.snapshot()  # reads do raise: the collector reports them


def test_writes_resume_after_redis_comes_back(redis_service, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    t = Telemetry(
        redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)),
        backoff_s=0.0,
    )
    redis_service.stop()
    try:
        deliver(t)
    finally:
        redis_service.start()
    deliver(t, merchant="after")  # also writes what the outage kept in the process
    assert t.snapshot().webhooks_received == {
        ("acme", "track_updated", "queued"): 1,
        ("after", "track_updated", "queued"): 1,
    }
