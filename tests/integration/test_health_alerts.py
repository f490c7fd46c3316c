"""The scheduler's alert check against a real Redis: open, keep, close, mail once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
import redis

from config import Settings
from notifiers.smtp import SmtpChannel
from tests.support.deliveries import delivery
from tests.support.smtp_server import SmtpServer
from workers import health
from workers.broker import QUEUES
from workers.outbox import OutboxChannel
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis

NS = "parcelhook"


@pytest.fixture()
def client(redis_client: redis.Redis) -> redis.Redis:
    """The session Redis's client (``ops_fixtures.redis_client``), by this module's name."""
    return redis_client


def runtime(
    client: redis.Redis, *, ops_email: str | None = "oncall@example.com", email_channel: Any = None
) -> Any:
    settings = replace(Settings(), broker_url="redis://unused", ops_alert_email=ops_email)
    channel = email_channel if email_channel is not None else OutboxChannel(None, "email")  # type: ignore[arg-type]
    return SimpleNamespace(
        settings=settings, telemetry=Telemetry(client), sender=SimpleNamespace(channels={"email": channel})
    )


def beat(client: redis.Redis, worker: str = "w1") -> None:
    client.zadd(f"{NS}:__workers__", {worker: int(time.time() * 1000)})


def enqueue_old(client: redis.Redis, queue: str, age_s: float) -> None:
    message = {
        "queue_name": queue,
        "actor_name": "process_event",
        "args": [],
        "kwargs": {},
        "options": {},
        "message_id": "m-old",
        "message_timestamp": int((time.time() - age_s) * 1000),
    }
    client.hset(f"{NS}:{queue}.msgs", "r-old", dramatiq.get_encoder().encode(message))
    client.rpush(f"{NS}:{queue}", "r-old")


def dead_letter(client: redis.Redis, queue: str, redis_id: str) -> None:
    client.zadd(f"{NS}:{queue}.XQ", {redis_id: int(time.time() * 1000)})


def active(client: redis.Redis) -> dict[str, Any]:
    return health.stored_alerts(client)


def test_a_quiet_system_with_a_live_worker_has_no_alerts(client: redis.Redis) -> None:
    beat(client)
    assert health.check(runtime(client)) == 0
    assert active(client) == {}
    assert health.last_check(client) is not None
    assert health.recent_mail(client) == []


def test_an_alert_opens_once_stays_with_its_since_and_closes(client: redis.Redis) -> None:
    rt = runtime(client)
    assert health.check(rt) == 1  # nothing has ever sent a heartbeat
    first = active(client)["no_worker"]
    assert first["severity"] == "critical"
    time.sleep(0.01)
    assert health.check(rt) == 1
    second = active(client)["no_worker"]
    assert second["since"] == first["since"] and second["last_seen"] > first["last_seen"]
    [mail] = health.recent_mail(client)  # mailed once, when it opened
    assert mail["to"] == "oncall@example.com"
    assert mail["via"] == "captured", "no SMTP: kept in Redis for the dashboard, not the merchant outbox"
    assert "No live worker" in mail["subject"]
    beat(client)
    assert health.check(rt) == 0
    assert active(client) == {}


def test_a_backed_up_queue_alerts_with_its_oldest_age(client: redis.Redis) -> None:
    beat(client)
    enqueue_old(client, "events", age_s=400)
    health.check(runtime(client))
    alert = active(client)["queue_age:events"]
    assert 399 <= alert["value"] <= 420
    assert client.llen(f"{NS}:events") == 1, "reading never disturbs the broker's keys"


def test_new_dead_letters_alert_until_someone_requeues_or_purges_them(client: redis.Redis) -> None:
    beat(client)
    rt = runtime(client)
    dead_letter(client, "notifications", "old-1")
    health.check(rt)
    assert active(client) == {}, "dead letters that were there at the first check are the baseline"
    dead_letter(client, "notifications", "new-1")
    dead_letter(client, "notifications", "new-2")
    health.check(rt)
    assert active(client)["dead_letters:notifications"]["value"] == 2
    beat(client)
    health.check(rt)
    assert "dead_letters:notifications" in active(client), "stays open while nobody looked"
    client.zrem(f"{NS}:notifications.XQ", "new-1", "new-2")
    beat(client)
    health.check(rt)
    assert active(client) == {}
    assert len(health.recent_mail(client)) == 1


def test_a_burst_of_401s_for_one_merchant_alerts(client: redis.Redis) -> None:
    beat(client)
    t = Telemetry(client)
    now = datetime.now(UTC)
    for _ in range(20):
        t.webhook(**delivery("acme", "bad_signature", 401, "signature mismatch", latency_s=0.001, at=now))
    for _ in range(5):
        t.webhook(**delivery("globex", "bad_token", 401, "wrong token", latency_s=0.001, at=now))
    health.check(runtime(client))
    assert set(active(client)) == {"webhook_401:acme"}
    assert active(client)["webhook_401:acme"]["value"] == 20


def test_without_an_ops_address_nothing_is_mailed(client: redis.Redis) -> None:
    health.check(runtime(client, ops_email=None))
    assert "no_worker" in active(client)
    assert health.recent_mail(client) == []


@pytest.fixture()
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_alert_mail_is_sent_through_the_smtp_channel_when_configured(
    client: redis.Redis, smtp: SmtpServer
) -> None:
    rt = runtime(client, email_channel=SmtpChannel.from_url(smtp.url))
    health.check(rt)
    health.check(rt)
    [received] = smtp.messages
    assert received.rcpt_tos == ["oncall@example.com"]
    assert "No live worker" in str(received.message["Subject"])
    [mail] = health.recent_mail(client)
    assert mail["via"] == "smtp" and mail["error"] is None


def test_a_failing_mail_is_recorded_and_does_not_fail_the_check(client: redis.Redis) -> None:
    rt = runtime(client, email_channel=SmtpChannel.from_url("smtp://127.0.0.1:1?timeout=1"))
    assert health.check(rt) == 1
    [mail] = health.recent_mail(client)
    assert mail["via"] == "failed" and "TransientChannelError" in mail["error"]


def test_overlapping_checks_are_skipped(client: redis.Redis) -> None:
    client.set(health.LOCK_KEY, "someone-else", ex=60)
    assert health.check(runtime(client)) == 0
    assert health.last_check(client) is None
    assert client.get(health.LOCK_KEY) == b"someone-else", "never releases a lock it does not hold"


def test_the_dashboard_sees_live_rules_without_moving_state(client: redis.Redis) -> None:
    enqueue_old(client, "events", age_s=600)
    live = health.live_alerts(client, NS, QUEUES)
    assert {a.key for a in live} == {"queue_age:events", "no_worker"}
    assert active(client) == {} and health.last_check(client) is None
