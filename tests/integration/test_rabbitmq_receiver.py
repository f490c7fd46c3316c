"""The `web` process on RabbitMQ: gunicorn's gevent workers serve each request in a greenlet of
its own, and dramatiq's RabbitMQ broker keeps a connection per thread -- per greenlet under
gevent -- and never closes it (dramatiq issue #381). parcelhook pools the publishing
connections (``workers/rabbitmq_publisher.py``): many webhooks, few connections."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.signature import HEADER, sign
from tests.e2e.test_slow_clients import SAMPLE, _ready, _stop, create_merchant, procfile_command
from tests.support.polling import wait_until
from tests.support.processes import start_in_session
from tests.support.rabbitmq import RabbitNode, rabbitmq_service  # noqa: F401 - fixture
from tests.support.services import free_port
from workers.rabbitmq_publisher import IDLE_CAP

WEBHOOKS = 40


@dataclass(frozen=True)
class Web:
    port: int
    token: str
    secret: str
    vhost: str
    log: Path

    def post(self, body: bytes) -> dict[str, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/webhooks/shippo/acme?token={self.token}",
            data=body,
            headers={
                "Content-Type": "application/json",
                HEADER: sign(self.secret, body, int(time.time())),
                "Connection": "close",  # a new connection, so a new greenlet, every time
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))


@pytest.fixture()
def web_on_rabbitmq(
    rabbitmq_service: RabbitNode,  # noqa: F811 - the imported fixture
    redis_url: str,
    sqlite_url: str,
    tmp_path: Path,
) -> Iterator[Web]:
    from cryptography.fernet import Fernet

    with rabbitmq_service.vhost() as vhost:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PARCELHOOK_")},
            "PARCELHOOK_DATABASE_URL": sqlite_url,
            "PARCELHOOK_BROKER_URL": rabbitmq_service.amqp_url(vhost),
            "PARCELHOOK_REDIS_URL": redis_url,
            "PARCELHOOK_SIGNING_KEY": "test-signing-key-" + "z" * 16,
            "PARCELHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "PARCELHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PARCELHOOK_VAR_DIR": str(tmp_path),
            "PARCELHOOK_WEB_PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        secret = secrets.token_hex(16)
        token = create_merchant(env, "acme", secret)
        log_path = tmp_path / "web.log"
        with open(log_path, "w") as log:
            process = start_in_session(["/bin/sh", "-c", "exec " + procfile_command("web")], env=env, log=log)
            try:
                wait_until(lambda: _ready(port) or process.poll() is not None, timeout=30, what="web ready")
                assert process.poll() is None, log_path.read_text()
                yield Web(port, token, secret, vhost, log_path)
            finally:
                _stop(process)


def _track(n: int) -> bytes:
    data = json.loads(SAMPLE.read_text())
    data["data"]["tracking_status"]["object_id"] = f"rabbit-{n:04d}".ljust(32, "0")  # a new event each
    return json.dumps(data).encode()


def test_many_webhooks_through_gevent_workers_use_few_rabbitmq_connections(
    web_on_rabbitmq: Web,
    rabbitmq_service: RabbitNode,  # noqa: F811 - the imported fixture
) -> None:
    web = web_on_rabbitmq
    answers = [web.post(_track(n))["status"] for n in range(WEBHOOKS)]
    assert answers == ["queued"] * WEBHOOKS, web.log.read_text()[-3000:]

    def events_on_rabbitmq() -> bool:
        row = rabbitmq_service.api("GET", f"/api/queues/{web.vhost}/events").json()
        return bool(row.get("messages") == WEBHOOKS)

    wait_until(events_on_rabbitmq, timeout=20, what=f"{WEBHOOKS} events on RabbitMQ")
    # Before the fix every request left its own connection open: WEBHOOKS of them.
    seen = wait_until(lambda: rabbitmq_service.connections(web.vhost), timeout=20, what="a connection")
    most = len(seen)
    deadline = time.monotonic() + 3  # RabbitMQ lists connections as they open: watch a little longer
    while time.monotonic() < deadline:
        most = max(most, len(rabbitmq_service.connections(web.vhost)))
        time.sleep(0.2)
    assert 1 <= most <= IDLE_CAP + 1, (most, web.log.read_text()[-3000:])
