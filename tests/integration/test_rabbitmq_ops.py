"""Ops on a real RabbitMQ node: the queue view (API, CLI, /metrics), dead letters (list,
requeue, purge) and health alerts read RabbitMQ itself -- through its management API when
``PARCELHOOK_RABBITMQ_MANAGEMENT_URL`` is set, through passive declares otherwise."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq
import pika  # type: ignore[import-untyped]  # no stubs on PyPI
import pytest
import redis
from flask.testing import FlaskClient

from admin.ops_cli import add_ops_commands
from admin.queues import inspector_for
from admin.services import Services
from config import Settings
from store.database import Database
from tests.integration.conftest import ADMIN_TOKEN, ENCRYPTION_KEY, SIGNING_KEY
from tests.integration.ops_fixtures import raising
from tests.support.polling import running_worker, wait_until
from tests.support.rabbitmq import RabbitNode, rabbitmq_service  # noqa: F401 - fixture
from workers import health
from workers.broker import build_broker

pytestmark = pytest.mark.redis


@dataclass
class RabbitOps:
    settings: Settings
    broker: dramatiq.Broker
    http: FlaskClient
    services: Services
    node: RabbitNode
    vhost: str

    def queues(self) -> dict[str, dict[str, Any]]:
        r = self.http.get("/api/ops/queues", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.get_json()
        return {q["name"]: q for q in r.get_json()["queues"]}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.open(path, method=method, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def cli(self, *argv: str) -> str:
        parser = argparse.ArgumentParser(prog="parcelhook")
        add_ops_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        out = io.StringIO()
        assert args.func(args, self.services, out) == 0, out.getvalue()
        return out.getvalue()

    def peek(self, queue: str) -> list[dict[str, Any]]:
        """Every message on ``queue`` (returned to it afterwards)."""
        connection = pika.BlockingConnection(pika.URLParameters(self.settings.broker_url))
        channel = connection.channel()
        found = []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            found.append(json.loads(body))
        connection.close()
        return found


@pytest.fixture(params=["management", "passive"])
def rabbit_ops(
    request: pytest.FixtureRequest,
    rabbitmq_service: RabbitNode,  # noqa: F811 - the imported fixture
    redis_url: str,
    tmp_path: Path,
) -> Iterator[RabbitOps]:
    from admin.app import create_app

    with rabbitmq_service.vhost() as vhost:
        settings = replace(
            Settings(),
            broker_url=rabbitmq_service.amqp_url(vhost),
            redis_url=redis_url,
            rabbitmq_management_url=(
                rabbitmq_service.management_url if request.param == "management" else None
            ),
            database_url=f"sqlite:///{tmp_path / 'ph.db'}",
            admin_token=ADMIN_TOKEN,
            signing_key=SIGNING_KEY,
            encryption_keys=(ENCRYPTION_KEY,),
            var_dir=tmp_path,
        )
        broker = build_broker(settings)  # the workers' broker: the test's actors run on it
        app_broker = build_broker(settings)  # the admin app binds the real actors to its own
        client = redis.Redis.from_url(redis_url)
        database = Database(settings.database_url)
        services = Services.from_settings(settings, database, client)
        app = create_app(settings, services=services, broker=app_broker)
        try:
            yield RabbitOps(settings, broker, app.test_client(), services, rabbitmq_service, vhost)
        finally:
            broker.close()
            app_broker.close()
            client.close()
            database.dispose()


def test_fill_dead_letter_requeue_and_purge_show_rabbitmqs_own_numbers(rabbit_ops: RabbitOps) -> None:
    ops = rabbit_ops
    managed = ops.settings.rabbitmq_management_url is not None
    fail = dramatiq.actor(broker=ops.broker, queue_name="events", actor_name="process_event", max_retries=0)(
        raising(RuntimeError("db down"))
    )
    filler = build_broker(ops.settings)  # a broker no worker runs: its queue is not consumed
    idle = dramatiq.actor(broker=filler, queue_name="notifications", actor_name="send_notification")(
        lambda *a: None
    )
    # fill: three notifications nobody consumes
    sent = [idle.send(n) for n in (1, 2, 3)]
    filler.close()
    wait_until(lambda: ops.queues()["notifications"]["ready"] == 3, what="3 ready notifications")
    notifications = ops.queues()["notifications"]
    assert notifications["dead"] == 0 and notifications["delayed"] == 0
    assert set(notifications) == {"name", "ready", "delayed", "dead", "in_flight", "oldest_age_s"}
    [direct] = [q for q in inspector_for(ops.services).queues() if q.name == "notifications"]
    assert direct.consumers == 0  # RabbitMQ's own consumer count, in both modes
    if managed:
        assert notifications["in_flight"] == 0
        assert 0 <= notifications["oldest_age_s"] < 120
        # the peek for the oldest age put the head back: still the first message, still 3
        assert [m["message_id"] for m in ops.peek("notifications")] == [m.message_id for m in sent]
    else:
        assert notifications["in_flight"] is None and notifications["oldest_age_s"] is None
    table = ops.cli("queues")
    assert [line.split()[:4] for line in table.splitlines() if line.startswith("notifications")] == [
        ["notifications", "3", "0", "0"]
    ]

    # dead-letter two events through a real worker (only the events queue is consumed)
    calls = [("acme", f"ev-{i}", "2026-05-01T10:00:00+00:00", "{}") for i in range(2)]
    messages = [fail.send(*c) for c in calls]
    with running_worker(ops.broker):
        wait_until(lambda: ops.queues()["events"]["dead"] == 2, timeout=30, what="2 dead events")
    listed = ops.call("GET", "/api/ops/dead-letters?queue=events&limit=10")
    assert listed["counts"] == {"events": 2}
    letters = {d["event_id"]: d for d in listed["dead_letters"]}
    assert set(letters) == {"ev-0", "ev-1"}
    for message, (_, event_id, *_) in zip(messages, calls, strict=True):
        letter = letters[event_id]
        assert letter["id"] == letter["message_id"] == message.message_id
        assert letter["actor"] == "process_event" and letter["merchant"] == "acme"
        assert letter["attempts"] == 1 and letter["last_error"] == "RuntimeError: db down"
        at = datetime.fromisoformat(letter["dead_lettered_at"])
        assert abs((datetime.now(UTC) - at).total_seconds()) < 600
    assert "2 shown, 2 dead in total" in ops.cli("dlq", "list", "--queue", "events")

    # the alert rules see the new dead letters and the backlog on RabbitMQ too
    rabbit = health.rabbit_queues(ops.settings)
    assert rabbit is not None
    figures = health.read_figures(
        ops.services.redis,
        "parcelhook",
        ("events", "notifications"),
        telemetry=None,
        thresholds=health.Thresholds(queue_age_s=0.0),
        now=datetime.now(UTC),
        dead_baseline={"events": 0},
        rabbit=rabbit,
    )
    alerts = {a.key for a in health.evaluate(figures, health.Thresholds(queue_age_s=0.0), datetime.now(UTC))}
    assert "dead_letters:events" in alerts
    assert ("queue_age:notifications" in alerts) is managed  # the age needs the management API

    # requeue one by id (API): back on events, same message id, retries reset; one unknown id
    first = messages[0].message_id
    assert ops.call("POST", "/api/ops/dead-letters/requeue", {"queue": "events", "ids": [first, "nope"]}) == {
        "queue": "events",
        "requeued": 1,
        "ignored": 1,
    }
    wait_until(
        lambda: (ops.queues()["events"]["ready"], ops.queues()["events"]["dead"]) == (1, 1),
        what="1 ready and 1 dead event",
    )
    [back] = ops.peek("events")
    assert back["message_id"] == first and back["args"][1] == "ev-0"
    assert back["options"]["retries"] == 0 and back["options"]["dlq_requeues"] == 1
    assert "traceback" not in back["options"]
    [left] = ops.call("GET", "/api/ops/dead-letters?queue=events")["dead_letters"]
    assert left["event_id"] == "ev-1"

    # requeue the rest with the CLI, then dead-letter it again and purge it all
    assert "requeued 1 message(s) on events" in ops.cli("dlq", "requeue", "--queue", "events", "--all")
    wait_until(lambda: ops.queues()["events"]["dead"] == 0, what="no dead events")
    with running_worker(ops.broker):
        wait_until(lambda: ops.queues()["events"]["dead"] == 2, timeout=30, what="2 dead events again")
    assert ops.call("POST", "/api/ops/dead-letters/purge", {"queue": "events", "ids": [first]})["purged"] == 1
    assert "purged 1 dead letter(s) from events" in ops.cli(
        "dlq", "purge", "--queue", "events", "--all", "--yes"
    )
    wait_until(lambda: ops.queues()["events"]["dead"] == 0, what="dead events purged")
    assert ops.call("GET", "/api/ops/dead-letters?queue=events")["dead_letters"] == []
    assert ops.queues()["notifications"]["ready"] == 3  # untouched throughout


def test_an_unreachable_rabbitmq_is_503_and_names_no_credentials(rabbit_ops: RabbitOps) -> None:
    ops = rabbit_ops
    settings = replace(ops.settings, broker_url="amqp://user:s3cret@127.0.0.1:1/")
    if ops.settings.rabbitmq_management_url:
        settings = replace(settings, rabbitmq_management_url="http://user:s3cret@127.0.0.1:1")
    from admin.app import create_app

    app = create_app(
        settings, services=replace(ops.services, settings=settings), broker=build_broker(settings)
    )
    http = app.test_client()
    for path in ("/api/ops/queues", "/api/ops/dead-letters"):
        r = http.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 503, (path, r.get_json())
        assert "s3cret" not in r.get_data(as_text=True)
