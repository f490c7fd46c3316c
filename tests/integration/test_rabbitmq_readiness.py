"""``/readyz`` on RabbitMQ asks RabbitMQ itself, and the state Redis apart.

On Redis the broker is also the state store, so one ping answers for both. On RabbitMQ the
receiver needs the node (to enqueue) and the state Redis (dedupe, telemetry): a readiness
check that pinged only the Redis would send traffic to a `web` whose broker is gone."""

from __future__ import annotations

from collections.abc import Callable

from config import Settings
from ingest.app import create_app
from store.database import Database
from tests.support.rabbitmq import RabbitNode, rabbitmq_service  # noqa: F401 - fixture
from tests.support.services import free_port


def readiness(settings: Settings) -> tuple[int, dict[str, str]]:
    database = Database(settings.database_url)
    try:
        response = create_app(settings, database=database).test_client().get("/readyz")
        checks = response.get_json()["checks"]
        assert isinstance(checks, dict)
        return response.status_code, {str(k): str(v) for k, v in checks.items()}
    finally:
        database.dispose()


def test_ready_when_rabbitmq_the_state_redis_and_the_database_answer(
    rabbitmq_service: RabbitNode,  # noqa: F811 - the imported fixture
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    redis_url: str,
) -> None:
    with rabbitmq_service.vhost() as vhost:
        status, checks = readiness(
            make_settings(sqlite_url, broker_url=rabbitmq_service.amqp_url(vhost), redis_url=redis_url)
        )
    assert (status, checks) == (200, {"broker": "ok", "state": "ok", "database": "ok"})


def test_unavailable_naming_the_broker_when_rabbitmq_is_unreachable(
    make_settings: Callable[..., Settings], sqlite_url: str, redis_url: str
) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    status, checks = readiness(make_settings(sqlite_url, broker_url=closed, redis_url=redis_url))
    assert status == 503
    assert checks["broker"].startswith("unreachable: "), checks
    assert checks["state"] == "ok" and checks["database"] == "ok"
