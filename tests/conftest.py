from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import RedisServer, postgres_server, redis_server


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture()
def redis_url(redis_service: RedisServer) -> Iterator[str]:
    """A clean Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_service.url)
    client.flushall()
    client.close()
    yield redis_service.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url
