"""Integration fixtures: real Redis, real SQLite/PostgreSQL databases, a real dramatiq worker."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker

from config import Settings
from store.database import Database
from store.migrate import upgrade
from store.vault import Vault, generate_key
from tests.integration.ops_fixtures import ops_broker, ops_services, redis_client  # noqa: F401 - fixtures
from tests.support.json_values import json_object
from tests.support.retries import fast_retries, retry_options  # noqa: F401 - fixtures
from tests.support.services import RedisServer
from tests.support.worker_process import broker_redis, twilio  # noqa: F401 - fixtures
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
            broker_url=redis_url,
            admin_token=ADMIN_TOKEN,
            signing_key=SIGNING_KEY,
            var_dir=tmp_path,
            **{"encryption_keys": (ENCRYPTION_KEY,), **overrides},
        )

    return make


class System:
    """A receiver, admin app and worker wired to one database and the test Redis."""

    def __init__(self, settings: Settings, broker: RedisBroker) -> None:
        from admin.app import create_app as create_admin
        from admin.services import Services
        from ingest.app import create_app as create_ingest
        from workers.runtime import configure

        self.settings = settings
        self.runtime = configure(settings)
        self.database = self.runtime.database
        self.broker = broker
        self.web = create_ingest(settings, database=self.database, broker=broker).test_client()
        self.admin_app = create_admin(
            settings, services=Services.from_settings(settings, self.database, broker.client), broker=broker
        )
        self.admin = self.admin_app.test_client()
        self._worker: dramatiq.Worker | None = None

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
        self._worker = dramatiq.Worker(self.broker, worker_timeout=50, worker_threads=4)
        self._worker.start()

    def drain(self, timeout_ms: int = 30_000) -> None:
        """Wait until every queue is empty and the worker is idle (delayed messages included)."""
        assert self._worker is not None, "start_worker() first"
        for _ in range(3):  # actors enqueue follow-ups (sends) while we wait
            for queue in QUEUES:
                self.broker.join(queue, timeout=timeout_ms)
            self._worker.join()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self.database.dispose()


@pytest.fixture()
def make_system(
    make_settings: Callable[..., Settings], broker: RedisBroker
) -> Iterator[Callable[..., System]]:
    created: list[System] = []

    def make(database_url: str, **overrides: Any) -> System:
        system = System(make_settings(database_url, **overrides), broker)
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
