"""The store, on SQLite AND PostgreSQL (``database`` is parametrized over both).

Migrations, idempotency carried by unique constraints, merchant tokens, keyset pagination.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from domain.payload import parse_event, parse_webhook
from store import merchants as merchant_store
from store import orders as order_store
from store import shipments as shipment_store
from store.database import Database, utcnow
from store.errors import Conflict
from store.migrate import downgrade, upgrade
from store.schema import deliveries, metadata, notifications, shipment_scans, shipments
from tests.fixtures.shippo import raw, scenario
from tests.integration.conftest import VAULT
from tests.support import rows
from workers.processing import process_event

TABLES = set(metadata.tables)


def _tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def _count(db: Database, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def _merchant(db: Database, slug: str = "acme", **profile: object) -> merchant_store.Merchant:
    with db.write() as conn:
        merchant, created = merchant_store.upsert(conn, slug, vault=VAULT, name="Acme", profile=profile)
    assert created
    return merchant


# ---------------------------------------------------------------- migrations


def test_migrations_reach_head_and_go_down_to_base_and_up_again(database: Database) -> None:
    assert _tables(database) == TABLES
    with database.read() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
    database.dispose()  # PostgreSQL: no idle connection holding locks during DDL
    downgrade(database.url, "base")
    assert _tables(database) == set()
    upgrade(database.url)
    assert _tables(database) == TABLES
    indexes = {ix["name"] for ix in sa.inspect(database.engine).get_indexes("orders")}
    assert {"ix_orders_merchant", "ix_orders_merchant_status", "ix_orders_merchant_exception"} <= indexes


def _head() -> str:
    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_the_migrations_build_exactly_the_schema_in_code(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], "store/schema.py changed without a migration (or the other way round)"


def test_sqlite_runs_in_wal_mode_and_postgres_in_read_committed(database: Database) -> None:
    with database.read() as conn:
        if database.is_sqlite:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        else:
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar_one() == "read committed"


# ---------------------------------------------------------------- idempotency


def test_the_same_delivery_twice_is_one_row_and_one_effect(database: Database) -> None:
    _merchant(database)
    body = scenario("delivered")[1].decode()
    now = utcnow()
    first = process_event(database, "acme", "evt-1", now, body, now)
    second = process_event(database, "acme", "evt-1", now, body, now)
    assert (first.status, second.status) == ("processed", "duplicate")
    assert _count(database, deliveries) == 1
    with database.read() as conn:
        [row] = conn.execute(shipments.select()).all()
    assert row.version == 1, "the duplicate never reached the shipment"


def test_a_delivery_row_is_unique_per_merchant_and_event_id(database: Database) -> None:
    merchant = _merchant(database)
    values = {
        "merchant_id": merchant.id,
        "event_id": "e",
        "event": "track_updated",
        "received_at": utcnow(),
        "processed_at": utcnow(),
        "outcome": "processed",
        "body": "{}",
    }
    with database.write() as conn:
        conn.execute(deliveries.insert().values(**values))
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        conn.execute(deliveries.insert().values(**values))
    assert _count(database, deliveries) == 1


def test_the_same_scan_twice_is_one_history_row(database: Database) -> None:
    merchant = _merchant(database)
    event = parse_event(parse_webhook(raw("track_updated_transit.json")))
    assert event is not None
    scans = event.scans()  # type: ignore[union-attr]
    for _ in range(2):
        with database.write() as conn:
            shipment = shipment_store.locate(database, conn, merchant.id, event)
            shipment_store.save(database, conn, shipment, shipment.state, (), scans)
    assert _count(database, shipments) == 1, "the second event found the first one's shipment"
    assert _count(database, shipment_scans) == len(scans)
    # and the constraint itself refuses a plain second insert
    with database.read() as conn:
        first = conn.execute(shipment_scans.select().limit(1)).one()
    copy = {
        c: getattr(first, c)
        for c in ("shipment_id", "scan_id", "status", "substatus", "status_date", "details", "location")
    }
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        conn.execute(shipment_scans.insert().values(**copy))


def test_the_same_notification_key_twice_is_one_row(database: Database) -> None:
    merchant = _merchant(database)
    ids = []
    for _ in range(2):
        with database.write() as conn:
            ids.append(rows.notification(database, conn, merchant.id, key="o1:s1:shipped:email"))
    assert ids[0] is not None and ids[1] is None
    assert _count(database, notifications) == 1


# ---------------------------------------------------------------- merchants


def test_merchant_create_is_unique_by_slug(database: Database) -> None:
    _merchant(database)
    with pytest.raises(Conflict), database.write() as conn:
        merchant_store.upsert(conn, "acme", vault=VAULT, name="Other", profile={}, create_only=True)


def test_a_rotated_token_keeps_the_old_one_for_24_hours_and_not_after(database: Database) -> None:
    before = _merchant(database)
    now = utcnow()
    with database.write() as conn:
        after = merchant_store.rotate_token(conn, "acme", vault=VAULT, now=now)
    with database.read() as conn:
        stored = merchant_store.require(conn, "acme", VAULT)
    assert stored.webhook_token == after.webhook_token != before.webhook_token
    assert stored.accepts_token(after.webhook_token, now + timedelta(days=30))
    assert stored.accepts_token(before.webhook_token, now + timedelta(hours=23, minutes=59))
    assert not stored.accepts_token(before.webhook_token, now + timedelta(hours=24, seconds=1))
    assert not stored.accepts_token("guess", now)
    assert stored.previous_token_expires_at == now + timedelta(hours=24)


def test_merchant_profile_and_secrets_round_trip(database: Database) -> None:
    with database.write() as conn:
        merchant_store.upsert(
            conn,
            "acme",
            vault=VAULT,
            name="Acme",
            profile={"timezone": "Europe/Paris"},
            hmac_secrets=["s" * 20],
        )
        merchant, created = merchant_store.upsert(
            conn, "acme", vault=VAULT, name=None, profile={"default_locale": "fr"}
        )
    assert not created
    assert (merchant.timezone, merchant.default_locale, merchant.hmac_secrets) == (
        "Europe/Paris",
        "fr",
        ("s" * 20,),
    )
    assert "s" * 20 not in json.dumps(merchant.to_public("http://x")) and "s" * 20 not in repr(merchant)


# ---------------------------------------------------------------- orders


def test_orders_page_newest_first_with_a_keyset_cursor(database: Database) -> None:
    merchant = _merchant(database)
    other = _merchant(database, "other")
    with database.write() as conn:
        for n in range(25):
            order = order_store.ensure(database, conn, merchant.id, f"A{n:03d}")
            if n % 5 == 0:
                order_store.set_status(conn, order.id, "delivered", None)
        order_store.ensure(database, conn, other.id, "A000")
    seen: list[str] = []
    cursor_id = None
    pages = 0
    while True:
        with database.read() as conn:
            found, cursor = order_store.page(
                conn, merchant.id, status=None, exception=None, limit=10, before_id=cursor_id
            )
        pages += 1
        seen.extend(o.ref for o in found)
        if cursor is None:
            break
        cursor_id = order_store.CURSOR.decode(cursor)
    assert pages == 3
    assert seen == [f"A{n:03d}" for n in reversed(range(25))]
    with database.read() as conn:
        delivered, cursor = order_store.page(
            conn, merchant.id, status="delivered", exception=None, limit=10, before_id=None
        )
    assert [o.ref for o in delivered] == ["A020", "A015", "A010", "A005", "A000"] and cursor is None


def test_an_exact_page_has_no_next_cursor(database: Database) -> None:
    merchant = _merchant(database)
    with database.write() as conn:
        for n in range(10):
            order_store.ensure(database, conn, merchant.id, f"B{n}")
    with database.read() as conn:
        found, cursor = order_store.page(
            conn, merchant.id, status=None, exception=None, limit=10, before_id=None
        )
    assert len(found) == 10 and cursor is None


def test_a_cursor_that_is_not_ours_is_refused() -> None:
    for bad in ("nope", "e30", order_store.CURSOR.encode(5)[:-2] + "!!"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            order_store.CURSOR.decode(bad)
