"""workers.redis_replies narrows redis-py's declared reply types to what a real Redis returns,
for clients with and without ``decode_responses``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from workers.redis_replies import members, raw, scored_members

pytestmark = pytest.mark.redis


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=request.param)
    c.zadd("z", {"a": 1.0, "b": 2.5, "c": 3})
    yield c
    c.close()


def test_scored_members_are_text_and_float_in_reply_order(client: redis.Redis) -> None:
    assert scored_members(client.zrevrange("z", 0, -1, withscores=True)) == [
        ("c", 3.0),
        ("b", 2.5),
        ("a", 1.0),
    ]
    assert scored_members(client.zrevrangebyscore("z", "+inf", 2, withscores=True)) == [
        ("c", 3.0),
        ("b", 2.5),
    ]


def test_members_are_text_in_reply_order(client: redis.Redis) -> None:
    assert members(client.zrange("z", 0, -1)) == ["a", "b", "c"]


def test_a_reply_of_the_other_shape_is_refused(client: redis.Redis) -> None:
    with pytest.raises(TypeError, match="withscores=True is needed"):
        scored_members(client.zrange("z", 0, -1))
    with pytest.raises(TypeError, match="withscores=True was passed"):
        members(client.zrange("z", 0, -1, withscores=True))


def test_raw_gives_the_bytes_a_value_was_stored_as(client: redis.Redis) -> None:
    client.set("k", "é")
    assert raw(client.get("k")) == "é".encode()
    assert raw(client.get("missing")) is None
