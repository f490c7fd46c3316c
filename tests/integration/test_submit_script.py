"""The receiver's one round trip (``ingest/queue.py``): the telemetry writes that ride in the submit
script as ONE packed argument land in Redis exactly as the same writes sent through a redis-py
pipeline do, whatever the keys and values hold; a duplicate writes nothing; and the script runs
only the commands it allows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.queue import AtomicSubmit, EventQueue, Writes

pytestmark = [pytest.mark.redis]

NAMESPACE = "submit-test"


@pytest.fixture()
def client(redis_client: redis.Redis) -> redis.Redis:
    """The session Redis's client (``ops_fixtures.redis_client``), by this module's name."""
    return redis_client


@pytest.fixture()
def queue(redis_url: str, client: redis.Redis) -> Iterator[EventQueue]:
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE)

    @dramatiq.actor(broker=broker, actor_name="submit_test_event", queue_name="events")
    def actor(slug: str, event_id: str, received_at: str, body: str) -> None: ...

    yield EventQueue(client, actor.send, atomic=AtomicSubmit(client, actor))
    broker.close()


# keys and values as telemetry could carry them: any text Redis takes (UTF-8), controls included
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
commands = st.lists(
    st.one_of(
        st.tuples(st.just("hincrby"), text, text, st.integers(-(2**40), 2**40)),
        st.tuples(
            st.just("hincrbyfloat"), text, text, st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
        ),
        st.tuples(st.just("lpush"), text, st.lists(text, min_size=1, max_size=3)),
        st.tuples(st.just("ltrim"), text, st.integers(-3, 3), st.integers(-3, 3)),
        st.tuples(st.just("expire"), text, st.integers(60, 3600)),
    ),
    max_size=8,
)


def fill(target: Any, ops: list[tuple[Any, ...]], prefix: str) -> None:
    """The same writes into a pipeline or a ``Writes``, each key under ``prefix`` (with one hash
    key per command kind, so a hash and a list never share a key)."""
    for name, key, *rest in ops:
        key = f"{prefix}:{name}:{key}"
        if name == "lpush":
            target.lpush(key, *rest[0])
        else:
            getattr(target, name)(key, *rest)


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*"):
        kind = client.type(key)
        if kind == b"hash":
            value: Any = {f: float(v) for f, v in client.hgetall(key).items()}
        else:
            value = client.lrange(key, 0, -1)
        out[key[len(prefix) :]] = (value, client.ttl(key) > 0)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=commands)
def test_packed_writes_land_as_a_pipeline_would_write_them(
    queue: EventQueue, client: redis.Redis, ops: list[tuple[Any, ...]]
) -> None:
    salt = uuid4().hex  # one Redis for every example: fresh keys and event id each time
    pipe = client.pipeline(transaction=False)
    fill(pipe, ops, f"p{salt}")
    try:
        pipe.execute()
    except redis.ResponseError:
        return  # e.g. an increment past 64 bits: a pipeline refuses it too, nothing to compare
    writes = Writes()
    fill(writes, ops, f"s{salt}")
    queued = queue.submit(
        merchant_id=1, merchant_slug="acme", event_id=f"e{salt}", received_at="now", body="{}", if_new=writes
    )
    assert queued
    assert snapshot(client, f"s{salt}") == snapshot(client, f"p{salt}")


def test_a_duplicate_writes_nothing(queue: EventQueue, client: redis.Redis) -> None:
    first, second = Writes(), Writes()
    first.hincrby("t:counts", "accepted", 1)
    second.hincrby("t:counts", "accepted", 1)
    second.lpush("t:recent", "again")

    def submit(writes: Writes) -> bool:
        return queue.submit(
            merchant_id=1, merchant_slug="acme", event_id="e1", received_at="now", body="{}", if_new=writes
        )

    assert submit(first)
    assert not submit(second)
    assert client.hgetall("t:counts") == {b"accepted": b"1"}
    assert not client.exists("t:recent")
    assert client.llen(f"{NAMESPACE}:events") == 1


def test_the_script_runs_only_the_commands_it_allows(queue: EventQueue, client: redis.Redis) -> None:
    client.set("precious", "kept")
    assert queue.atomic is not None
    queue.atomic("seen:1", ("acme", "e1", "now", "{}"), ['[["del","precious"],["hincrby","t:c","n","2"]]'])
    assert client.get("precious") == b"kept"
    assert client.hgetall("t:c") == {b"n": b"2"}
