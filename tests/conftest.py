from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support.services import RedisServer, free_port, postgres_server, redis_server

# CI explores the same examples every run (a red build must be reproducible); laptops keep
# exploring new ones and remember failures in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

# workers.broker builds the broker from the environment when it is first imported — which
# may be at collection time, by any test module. So the session Redis's address is fixed
# here, before any test module is imported, and the server is started on it on demand.
TEST_REDIS_PORT = free_port()
os.environ["PARCELHOOK_BROKER_URL"] = f"redis://127.0.0.1:{TEST_REDIS_PORT}/0"


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    with redis_server(TEST_REDIS_PORT) as server:
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
