from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support.services import RedisServer, postgres_server, redis_server

# CI explores the same examples every run (a red build must be reproducible); laptops keep
# exploring new ones and remember failures in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    """The session's Redis, on a free port. Nothing reads its address from the environment:
    settings (``make_settings``) and the broker (``broker``) are built from it."""
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
