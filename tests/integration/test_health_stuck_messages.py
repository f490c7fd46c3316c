"""The health check against a real Redis: messages that stop moving beside live workers, and
the start-up grace of "no live worker"."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
import redis

from config import Settings
from store.database import Database
from workers import health
from workers.broker import QUEUES
from workers.outbox import OutboxChannel
from workers.telemetry import Telemetry

pytestmark = pytest.mark.redis

NS = "parcelhook"
WORKER = str(uuid.uuid4())  # a dramatiq broker id


@pytest.fixture()
def client(redis_client: redis.Redis) -> redis.Redis:
    """The session Redis's client (``ops_fixtures.redis_client``), by this module's name."""
    return redis_client


def runtime(client: redis.Redis) -> Any:
    settings = replace(Settings(), broker_url="redis://unused", ops_alert_email="oncall@example.com")
    return SimpleNamespace(
        settings=settings,
        telemetry=Telemetry(client),
        # the outbox captures no ops mail (workers/health.py skips it): its database is never opened
        sender=SimpleNamespace(channels={"email": OutboxChannel(Database("sqlite://"), "email")}),
    )


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def beat(client: redis.Redis, at: datetime) -> None:
    client.zadd(f"{NS}:__workers__", {"host:1": ms(at)})


def fetched_delayed(client: redis.Redis, redis_id: str, eta: datetime) -> None:
    """A delayed send a worker fetched into its memory (``.DQ`` ack set), due at ``eta``."""
    message = {
        "queue_name": "notifications.DQ",
        "actor_name": "send_notification",
        "args": [7],
        "kwargs": {},
        "options": {"eta": ms(eta), "redis_message_id": redis_id, "retries": 1},
        "message_id": redis_id,
        "message_timestamp": ms(eta) - 20_000,
    }
    client.hset(f"{NS}:notifications.DQ.msgs", redis_id, dramatiq.get_encoder().encode(message))
    client.sadd(f"{NS}:__acks__.{WORKER}.notifications.DQ", redis_id)


def fetched(client: redis.Redis, redis_id: str) -> None:
    message = {
        "queue_name": "notifications",
        "actor_name": "send_notification",
        "args": [8],
        "kwargs": {},
        "options": {"redis_message_id": redis_id},
        "message_id": redis_id,
        "message_timestamp": 0,
    }
    client.hset(f"{NS}:notifications.msgs", redis_id, json.dumps(message))
    client.sadd(f"{NS}:__acks__.{WORKER}.notifications", redis_id)


def active(client: redis.Redis) -> dict[str, Any]:
    return health.stored_alerts(client)


def test_retries_stranded_past_their_eta_beside_live_workers_alert(client: redis.Redis) -> None:
    now = datetime.now(UTC)
    beat(client, now)
    fetched_delayed(client, "soon", now + timedelta(minutes=3))
    fetched_delayed(client, "just-due", now - timedelta(seconds=30))
    health.check(runtime(client), now=now)
    assert active(client) == {}, "not yet due, or due moments ago: a worker is about to move it"

    for i in range(63):
        fetched_delayed(client, f"stranded-{i}", now - timedelta(minutes=9, seconds=30))
    health.check(runtime(client), now=now)
    alert = active(client)["delayed_stuck:notifications"]
    assert alert["severity"] == "critical" and 569 <= alert["value"] <= 571
    assert alert["message"].startswith(
        "63 of 65 delayed messages on queue 'notifications' are past their due time"
    )
    [mail] = health.recent_mail(client)
    assert "stranded" in mail["text"]


def test_a_message_held_in_flight_for_over_ten_minutes_alerts(client: redis.Redis) -> None:
    start = datetime.now(UTC)
    beat(client, start)
    fetched(client, "r-1")
    health.check(runtime(client), now=start)
    assert active(client) == {}
    later = start + timedelta(minutes=9)
    beat(client, later)
    fetched(client, "r-2")  # first seen now
    health.check(runtime(client), now=later)
    assert active(client) == {}, "held 9 minutes: still within a long job plus its wait"
    latest = start + timedelta(minutes=11)
    beat(client, latest)
    health.check(runtime(client), now=latest)
    alert = active(client)["in_flight_stuck:notifications"]
    assert alert["value"] == 660.0 and alert["message"].startswith("1 of 2 in-flight messages")
    client.srem(f"{NS}:__acks__.{WORKER}.notifications", "r-1")  # finally acked
    health.check(runtime(client), now=latest)
    assert active(client) == {}
    assert client.hkeys(health.IN_FLIGHT_SEEN_KEY) == [b"notifications|r-2"], "forgets what left"


def test_no_live_worker_opens_only_after_the_start_up_grace(client: redis.Redis) -> None:
    now = datetime.now(UTC)
    rt = runtime(client)
    assert health.check(rt, now=now, started_at=now - timedelta(seconds=2)) == 0
    assert {a.key for a in health.live_alerts(client, NS, QUEUES, now=now)} == set(), (
        "the dashboard applies the running checker's grace too"
    )
    assert health.recent_mail(client) == []
    later = now + timedelta(seconds=31)
    assert health.check(rt, now=later, started_at=now - timedelta(seconds=2)) == 1
    assert set(active(client)) == {"no_worker"}
    assert {a.key for a in health.live_alerts(client, NS, QUEUES, now=later)} == {"no_worker"}


def test_a_worker_beating_within_the_grace_means_no_alert_at_all(client: redis.Redis) -> None:
    now = datetime.now(UTC)
    rt = runtime(client)
    health.check(rt, now=now, started_at=now)
    beat(client, now + timedelta(seconds=4))
    for step in (10, 30, 60):
        at = now + timedelta(seconds=step)
        beat(client, at)
        health.check(rt, now=at, started_at=now)
    assert active(client) == {} and health.recent_mail(client) == []
