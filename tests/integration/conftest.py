"""Integration fixtures: real Redis, real SQLite/PostgreSQL databases, a real dramatiq worker;
and, for the tests marked ``on_both_brokers``, a virtual host of the session's RabbitMQ node."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker

from config import Settings
from store.database import Database
from store.migrate import upgrade
from store.vault import Vault, generate_key
from tests.integration.ops_fixtures import ops_broker, ops_services, redis_client  # noqa: F401 - fixtures
from tests.support.json_values import json_object
from tests.support.pending_messages import PendingMessages
from tests.support.rabbitmq import RabbitNode, rabbitmq_service, rabbitmq_vhost  # noqa: F401 - fixtures
from tests.support.retries import fast_retries, retry_options  # noqa: F401 - fixtures
from tests.support.services import RedisServer
from tests.support.worker_process import broker_redis, sms_workers, twilio  # noqa: F401 - fixtures
from workers.broker import QUEUES

ADMIN_TOKEN = "test-admin-token-" + "x" * 16
SIGNING_KEY = "test-signing-key-" + "y" * 16
ENCRYPTION_KEY = generate_key()  # PARCELHOOK_ENCRYPTION_KEYS of every test system (a Fernet key)
VAULT = Vault([ENCRYPTION_KEY])  # for tests that call the merchant store directly


@pytest.fixture(scope="session")
def broker(redis_service: RedisServer) -> Iterator[RedisBroker]:
    """The broker of every in-process ``System``: the workers' own set-up on the session Redis,
    built once (each ``System`` binds the actors to it again)."""
    from workers.broker import build_broker

    built = build_broker(replace(Settings(), broker_url=redis_service.url))
    assert isinstance(built, RedisBroker), "a redis:// URL builds a RedisBroker"
    yield built
    built.close()


#: The brokers a ``System`` runs on.
BROKERS = ("redis", "rabbitmq")
#: Runs a test that builds its ``System`` with ``make_system`` (or ``system``) on each broker.
on_both_brokers = pytest.mark.parametrize("broker_name", BROKERS, indirect=True)


@pytest.fixture()
def broker_name(request: pytest.FixtureRequest) -> str:
    """The broker of this test's ``System``: Redis unless parametrized (``on_both_brokers``)."""
    name = str(getattr(request, "param", "redis"))
    assert name in BROKERS, name
    return name


@dataclass
class SystemBroker:
    """The broker a ``System`` runs on, the settings that point at it, and (RabbitMQ) the count
    of its pending messages that ``System.drain`` waits on (tests/support/pending_messages.py)."""

    broker: dramatiq.Broker
    settings: dict[str, str] = field(default_factory=dict)
    pending: PendingMessages | None = None


@pytest.fixture()
def system_broker(broker_name: str, request: pytest.FixtureRequest, redis_url: str) -> Iterator[SystemBroker]:
    """Redis: the session broker. RabbitMQ: the workers' own set-up on a virtual host of this
    test's (deleted after it), with the worker state (heartbeats, telemetry) in the test Redis."""
    if broker_name == "redis":
        yield SystemBroker(request.getfixturevalue("broker"))
        return
    from workers.broker import build_broker

    node: RabbitNode = request.getfixturevalue("rabbitmq_service")
    settings = {
        "broker_url": node.amqp_url(request.getfixturevalue("rabbitmq_vhost")),
        "redis_url": redis_url,
    }
    built = build_broker(replace(Settings(), broker_url=settings["broker_url"], redis_url=redis_url))
    pending = PendingMessages()
    built.add_middleware(pending)
    yield SystemBroker(built, settings, pending)
    built.close()


@pytest.fixture(scope="session")
def pg_template(postgres_url: str) -> str:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE parcelhook_template")
    engine.dispose()
    template_url = postgres_url.rsplit("/", 1)[0] + "/parcelhook_template"
    upgrade(template_url)
    return postgres_url


def _fresh_pg(postgres_url: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE parcelhook_template")
    engine.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test runs on the embedded default and on the production database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'parcelhook.db'}"
        upgrade(url)
        return url
    return _fresh_pg(request.getfixturevalue("pg_template"))


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'parcelhook.db'}"
    upgrade(url)
    return url


@pytest.fixture()
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture()
def make_settings(redis_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(database_url: str, **overrides: Any) -> Settings:
        return replace(
            Settings(),
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            signing_key=SIGNING_KEY,
            var_dir=tmp_path,
            **{"broker_url": redis_url, "encryption_keys": (ENCRYPTION_KEY,), **overrides},
        )

    return make


class System:
    """A receiver, admin app and worker wired to one database and one broker: the test Redis,
    or a RabbitMQ virtual host (``pending`` given) with the test Redis as its state Redis."""

    def __init__(
        self, settings: Settings, broker: dramatiq.Broker, pending: PendingMessages | None = None
    ) -> None:
        from admin.app import create_app as create_admin
        from admin.services import Services
        from ingest.app import create_app as create_ingest
        from workers.runtime import configure

        self.settings = settings
        self.runtime = configure(settings)
        self.database = self.runtime.database
        self.dramatiq_broker = broker
        self._pending = pending
        self.redis = (
            broker.client
            if isinstance(broker, RedisBroker)
            else redis.Redis.from_url(settings.state_redis_url)
        )
        self.services = Services.from_settings(settings, self.database, self.redis)
        self.web = create_ingest(settings, database=self.database, broker=broker).test_client()
        self.admin_app = create_admin(settings, services=self.services, broker=broker)
        self.admin = self.admin_app.test_client()
        self._worker: dramatiq.Worker | None = None

    @property
    def broker(self) -> RedisBroker:
        """The Redis broker, for a test that reads its keys (such a test runs on Redis only)."""
        assert isinstance(self.dramatiq_broker, RedisBroker), "this test reads Redis keys: Redis only"
        return self.dramatiq_broker

    def dead_letters(self, queue: str) -> int:
        """How many messages ``queue`` has dead-lettered, as the ops tools count them."""
        from admin.dead_letters import dead_letters_for

        return dead_letters_for(self.services).count(queue)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.admin_token}"}

    def create_merchant(self, slug: str = "acme", **profile: Any) -> dict[str, Any]:
        body = {"name": slug.title() + " Inc", **profile}
        response = self.admin.put(f"/api/merchants/{slug}", json=body, headers=self.auth())
        assert response.status_code in (200, 201), response.get_json()
        return json_object(response.get_json())

    def signing_merchant(self, slug: str = "acme") -> tuple[dict[str, Any], str]:
        """A merchant whose webhooks are HMAC-signed with a fresh secret and whose orders are found
        by "Order <n>" in the label metadata: (merchant, secret)."""
        secret = hmac_secret()
        return self.create_merchant(slug, hmac_secrets=[secret], order_ref_pattern=r"Order (\d+)"), secret

    def register_order(self, ref: str, email: str = "jane@example.com", merchant: str = "acme") -> int:
        """Register order ``ref`` for a customer reached at ``email``; the answer's status code."""
        response = self.admin.put(
            f"/api/merchants/{merchant}/orders/{ref}",
            json={"customer": {"email": email}},
            headers=self.auth(),
        )
        assert response.status_code in (200, 201), response.get_json()
        return response.status_code

    def order(self, ref: str, merchant: str = "acme") -> dict[str, Any]:
        """One order as the admin API shows it (it must exist)."""
        response = self.admin.get(f"/api/merchants/{merchant}/orders/{ref}", headers=self.auth())
        assert response.status_code == 200, response.get_json()
        return json_object(response.get_json())

    def post(
        self,
        merchant: dict[str, Any],
        body: bytes | str,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Any:
        import time

        from ingest.signature import HEADER, sign

        raw = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if secret:
            all_headers[HEADER] = sign(secret, raw, int(time.time()))
        url = f"/webhooks/shippo/{merchant['slug']}?token={token or merchant['webhook_token']}"
        return self.web.post(url, data=raw, headers=all_headers)

    def start_worker(self) -> None:
        self._worker = dramatiq.Worker(self.dramatiq_broker, worker_timeout=50, worker_threads=4)
        self._worker.start()

    def drain(self, timeout_ms: int = 30_000) -> None:
        """Wait until every queue is empty and the worker is idle (delayed messages included)."""
        assert self._worker is not None, "start_worker() first"
        if self._pending is not None:  # RabbitMQ: every message published is acked or rejected
            self._pending.drain(self._worker, timeout_ms / 1000)
            return
        for _ in range(3):  # actors enqueue follow-ups (sends) while we wait
            for queue in QUEUES:
                self.broker.join(queue, timeout=timeout_ms)
            self._worker.join()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self.redis is not getattr(self.dramatiq_broker, "client", None):
            self.redis.close()
        self.database.dispose()


@pytest.fixture()
def make_system(
    make_settings: Callable[..., Settings], system_broker: SystemBroker
) -> Iterator[Callable[..., System]]:
    created: list[System] = []

    def make(database_url: str, **overrides: Any) -> System:
        settings = make_settings(database_url, **{**system_broker.settings, **overrides})
        system = System(settings, system_broker.broker, system_broker.pending)
        created.append(system)
        return system

    yield make
    for system in created:
        system.stop()


@pytest.fixture()
def system(make_system: Callable[..., System], database_url: str) -> System:
    return make_system(database_url)


@pytest.fixture()
def worker_system(
    make_system: Callable[..., System], make_settings: Callable[..., Settings], sqlite_url: str
) -> System:
    """A ``System`` on SQLite whose settings worker *processes* share (tests/support/worker_process.py)."""
    from tests.support.worker_process import system_for_workers

    built: System = system_for_workers(make_system, make_settings, sqlite_url)
    return built


def hmac_secret() -> str:
    return secrets.token_hex(16)
