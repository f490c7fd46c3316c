"""The receiver's hot path is one Redis round trip (dedupe check, enqueue, seen-key and its own
telemetry in one script run), and still keeps the rules of ingest/queue.py: the seen-key only
with the enqueue, the message exactly as dramatiq writes it (a real worker runs it), and a
duplicate counted as a duplicate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from dramatiq import Message
from redis.connection import AbstractConnection

from tests.fixtures.shippo import raw
from tests.integration.conftest import System
from workers import redis_replies

pytestmark = pytest.mark.redis


def test_a_new_webhook_costs_one_redis_round_trip_and_a_duplicate_two(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = system.create_merchant()
    assert system.post(merchant, raw("track_updated_delivered.json")).get_json()["status"] == "queued"  # warm
    sends: list[int] = []  # one send_packed_command per round trip (a pipeline sends all at once)
    original: Callable[..., None] = AbstractConnection.send_packed_command  # unannotated in redis-py

    def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sends.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    assert system.post(merchant, raw("track_updated_transit.json")).get_json()["status"] == "queued"
    assert len(sends) == 1
    assert system.post(merchant, raw("track_updated_transit.json")).get_json()["status"] == "duplicate"
    assert len(sends) == 3  # the script (nothing written), then the telemetry


def test_the_message_is_the_one_dramatiq_writes_and_a_real_worker_runs_it(system: System) -> None:
    merchant = system.create_merchant()
    body = raw("track_updated_transit.json")
    answer = system.post(merchant, body).get_json()
    client = system.broker.client
    [redis_id] = client.lrange("parcelhook:events", 0, -1)
    stored = redis_replies.raw(client.hget("parcelhook:events.msgs", redis_id))
    assert stored is not None
    message = Message.decode(stored)
    assert message.actor_name == "process_event"
    assert message.queue_name == "events"
    assert message.options["redis_message_id"] == redis_replies.text(redis_id)
    assert message.args[0] == "acme" and message.args[1] == answer["event_id"]
    assert message.args[3] == body.decode()
    system.start_worker()
    system.drain()
    from store.schema import deliveries

    with system.database.read() as conn:
        assert [r.event_id for r in conn.execute(deliveries.select())] == [answer["event_id"]]


def test_a_failed_enqueue_marks_nothing_seen_so_the_retry_is_queued(system: System) -> None:
    merchant = system.create_merchant()
    client = system.broker.client
    client.set("parcelhook:events", "not a list")  # RPUSH fails inside the enqueue
    try:
        failed = system.post(merchant, raw("track_updated_transit.json"))
    finally:
        client.delete("parcelhook:events")
    assert failed.status_code == 503
    assert not client.keys("parcelhook:seen:*")
    retry = system.post(merchant, raw("track_updated_transit.json"))
    assert retry.get_json()["status"] == "queued"
    assert client.llen("parcelhook:events") == 1


def test_telemetry_counts_queued_and_duplicate_deliveries_apart(system: System) -> None:
    merchant = system.create_merchant()
    for _ in range(3):
        system.post(merchant, raw("track_updated_transit.json"))
    snapshot = system.web.application.extensions["parcelhook"].telemetry.snapshot()
    assert snapshot.webhooks_received == {
        ("acme", "track_updated", "queued"): 1,
        ("acme", "track_updated", "duplicate"): 2,
    }
    assert snapshot.webhook_latency is not None and snapshot.webhook_latency.count == 3
    log = system.admin.get("/api/ops/webhooks?merchant=acme", headers=system.auth()).get_json()["deliveries"]
    assert [d["outcome"] for d in log] == ["duplicate", "duplicate", "queued"]
    assert json.loads(json.dumps(log))  # plain JSON
