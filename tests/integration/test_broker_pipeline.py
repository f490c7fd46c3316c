"""The whole path on either broker: a signed webhook into the receiver, a real
``dramatiq workers.main`` worker process, the customer's email sent (outbox channel).
On RabbitMQ the worker keeps its state (heartbeats, telemetry) in ``PARCELHOOK_REDIS_URL``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from admin.services import Services
from config import Settings
from store.database import Database
from tests.fixtures.shippo import scenario
from tests.integration.conftest import ADMIN_TOKEN, ENCRYPTION_KEY, SIGNING_KEY
from tests.support.polling import wait_until
from tests.support.rabbitmq import rabbitmq_service, rabbitmq_vhost  # noqa: F401 - fixtures
from tests.support.worker_process import worker_env, worker_process
from workers.broker import build_broker

pytestmark = pytest.mark.redis
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["redis", "rabbitmq"])
def settings(request: pytest.FixtureRequest, redis_url: str, sqlite_url: str, tmp_path: Path) -> Settings:
    base = replace(
        Settings(),
        database_url=sqlite_url,
        broker_url=redis_url,
        admin_token=ADMIN_TOKEN,
        signing_key=SIGNING_KEY,
        encryption_keys=(ENCRYPTION_KEY,),
        var_dir=tmp_path,
    )
    if request.param == "redis":
        return base
    node = request.getfixturevalue("rabbitmq_service")
    return replace(
        base, broker_url=node.amqp_url(request.getfixturevalue("rabbitmq_vhost")), redis_url=redis_url
    )


@pytest.fixture()
def apps(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """The receiver and the admin app (test clients), each on a broker of its own."""
    from admin.app import create_app as create_admin
    from ingest.app import create_app as create_ingest

    database = Database(settings.database_url)
    client = redis.Redis.from_url(settings.state_redis_url)
    brokers = [build_broker(settings), build_broker(settings)]
    web = create_ingest(settings, database=database, broker=brokers[0]).test_client()
    admin = create_admin(
        settings, services=Services.from_settings(settings, database, client), broker=brokers[1]
    ).test_client()
    yield web, admin
    for broker in brokers:
        broker.close()
    client.close()
    database.dispose()


def test_a_webhook_goes_through_a_worker_process_to_a_sent_email(
    settings: Settings, apps: tuple[Any, Any], tmp_path: Path
) -> None:
    web, admin = apps
    r = admin.put(
        "/api/merchants/acme", json={"name": "Acme Inc", "order_ref_pattern": r"Order (\d+)"}, headers=AUTH
    )
    assert r.status_code in (200, 201), r.get_json()
    token = r.get_json()["webhook_token"]
    r = admin.put(
        "/api/merchants/acme/orders/1001",
        json={
            "customer": {"name": "Jane", "email": "jane@example.com"},
            "notify": {"email": True, "sms": False},
        },
        headers=AUTH,
    )
    assert r.status_code in (200, 201), r.get_json()
    label = scenario("delivered")[0]
    answer = web.post(f"/webhooks/shippo/acme?token={token}", data=label, content_type="application/json")
    assert answer.get_json()["status"] == "queued"

    env = worker_env(
        broker_url=settings.broker_url,
        database_url=settings.database_url,
        var_dir=tmp_path,
        signing_key=SIGNING_KEY,
        **({"redis_url": settings.redis_url} if settings.redis_url else {}),
    )

    def shipped_email() -> list[dict[str, Any]]:
        order = admin.get("/api/merchants/acme/orders/1001", headers=AUTH).get_json()
        return [
            n
            for n in order.get("notifications", [])
            if (n["kind"], n["channel"], n["status"]) == ("shipped", "email", "sent")
        ]

    with worker_process(env, tmp_path / "worker.log") as worker:
        wait_until(shipped_email, timeout=60, what="the shipped email sent by the worker process")
        assert "Traceback" not in worker.output(), worker.output()[-3000:]
    outbox = admin.get("/api/outbox?merchant=acme", headers=AUTH).get_json()
    assert [m["to"] for m in outbox["messages"]] == ["jane@example.com"], outbox
