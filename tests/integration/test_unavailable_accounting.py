"""Every 503 the Shippo receiver gives is counted in /metrics and shown in the webhook log with
its reason (the dependency that was unreachable) — also when that dependency is the Redis the
telemetry itself lives in. Real services only: a stopped redis-server, a PostgreSQL database that
refuses connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System, _fresh_pg
from tests.support.services import RedisServer, redis_server

pytestmark = pytest.mark.redis

LABEL, *_TRACKS = scenario("delivered")


def _samples(
    admin: FlaskClient, headers: dict[str, str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = admin.get("/metrics", headers=headers)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(response.get_data(as_text=True))
        for s in f.samples
    }


def _unavailable(samples: dict[Any, float], reason: str) -> float:
    return samples.get(("parcelhook_webhooks_unavailable_total", (("reason", reason),)), -1)


def _log(admin: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = admin.get("/api/ops/webhooks?outcome=unavailable&limit=50", headers=headers)
    assert response.status_code == 200
    return list(response.get_json()["deliveries"])


def _telemetry_of(system: System) -> Any:
    return system.web.application.extensions["parcelhook"].telemetry


def test_503s_while_redis_is_stopped_are_counted_once_it_is_back(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer
) -> None:
    system = make_system(sqlite_url)
    merchant = system.create_merchant("acme")
    _telemetry_of(system).backoff_s = 0.0  # write again on the next delivery (the default waits 1 s)
    redis_service.stop()
    try:
        answers = [system.post(merchant, LABEL) for _ in range(3)]
    finally:
        redis_service.start()
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
        assert answer.get_json()["message"].startswith("state_redis_unreachable: ")

    assert system.post(merchant, LABEL).status_code == 200  # the first write that gets through
    samples = _samples(system.admin, system.auth())
    assert _unavailable(samples, "state_redis_unreachable") == 3
    assert _unavailable(samples, "broker_unreachable") == 0
    assert _unavailable(samples, "database_unreachable") == 0
    assert (
        samples[
            (
                "parcelhook_webhooks_received_total",
                (("event", "transaction_created"), ("merchant", "acme"), ("outcome", "unavailable")),
            )
        ]
        == 3
    )
    log = _log(system.admin, system.auth())
    assert [(d["merchant"], d["status_code"]) for d in log] == [("acme", 503)] * 3
    assert all(d["reason"].startswith("state_redis_unreachable: ") for d in log)


@pytest.fixture
def state_redis() -> Iterator[RedisServer]:
    """A second Redis for the receiver's own state (PARCELHOOK_REDIS_URL), apart from the broker's."""
    with redis_server() as server:
        yield server


def test_503_when_only_the_broker_is_unreachable_says_broker(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer, state_redis: RedisServer
) -> None:
    from admin.app import create_app as create_admin
    from admin.services import Services

    system = make_system(sqlite_url, redis_url=state_redis.url)
    merchant = system.create_merchant("acme")
    state = redis.Redis.from_url(state_redis.url)
    admin = create_admin(
        system.settings,
        services=Services.from_settings(system.settings, system.database, state),
        broker=system.broker,
    ).test_client()
    redis_service.stop()
    try:
        answer = system.post(merchant, LABEL)
        samples = _samples(admin, system.auth())
        log = _log(admin, system.auth())
    finally:
        redis_service.start()
        state.close()
    assert answer.status_code == 503
    assert answer.get_json()["message"].startswith("broker_unreachable: ")
    assert _unavailable(samples, "broker_unreachable") == 1
    assert _unavailable(samples, "state_redis_unreachable") == 0
    assert [d["reason"].split(":")[0] for d in log] == ["broker_unreachable"]


def test_503_when_the_database_refuses_connections_says_database(
    make_system: Callable[..., System], pg_template: str
) -> None:
    url = _fresh_pg(pg_template)
    system = make_system(url)
    merchant = system.create_merchant("acme")
    name = sa.make_url(url).database
    admin_engine = sa.create_engine(pg_template, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
    try:
        answer = system.post(merchant, LABEL)
    finally:
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin_engine.dispose()
    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json()["message"].startswith("database_unreachable: ")
    samples = _samples(system.admin, system.auth())
    assert _unavailable(samples, "database_unreachable") == 1
    assert _unavailable(samples, "broker_unreachable") == 0
    assert [d["reason"].split(":")[0] for d in _log(system.admin, system.auth())] == ["database_unreachable"]
