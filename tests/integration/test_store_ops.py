"""The ops dashboard's aggregates (``store/ops.py``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa

from store import merchants as merchant_store
from store import ops as ops_store
from store.database import Database
from store.ops import OpenExceptions, OutcomeCount
from store.schema import notifications, shipments
from tests.integration.conftest import VAULT
from tests.support import rows

T0 = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def _merchant(db: Database, slug: str) -> int:
    with db.write() as conn:
        merchant, _ = merchant_store.upsert(conn, slug, vault=VAULT, name=slug.title(), profile={})
    return merchant.id


def _shipments(db: Database, merchant_id: int, *rows: tuple[str | None, datetime]) -> None:
    with db.write() as conn:
        conn.execute(
            shipments.insert(),
            [
                {
                    "merchant_id": merchant_id,
                    "tracking_number": f"T{merchant_id}-{i}",
                    "carrier": "usps",
                    "status": "TRANSIT",
                    "exception": exc,
                    "last_scan_at": scan,
                    "state": {},
                    "created_at": T0,
                    "updated_at": T0,
                }
                for i, (exc, scan) in enumerate(rows)
            ],
        )


def test_open_exceptions_are_counted_per_merchant_and_class_with_the_oldest_scan_as_an_instant(
    database: Database,
) -> None:
    acme, zeta = _merchant(database, "acme"), _merchant(database, "zeta")
    plus_two = timezone(timedelta(hours=2))
    _shipments(database, zeta, ("delayed", T0))
    _shipments(
        database,
        acme,
        ("delayed", T0),
        ("address_issue", T0 - timedelta(hours=2)),
        # 10:30+02:00 is 08:30Z: the oldest, although its wall clock is the latest
        ("address_issue", datetime(2026, 3, 5, 10, 30, tzinfo=plus_two)),
        ("address_issue", T0 - timedelta(hours=1)),
        (None, T0 - timedelta(days=9)),
    )  # no open exception: not counted
    with database.read() as conn:
        found = ops_store.open_exceptions(conn)
    assert found == [
        OpenExceptions("acme", "address_issue", 3, datetime(2026, 3, 5, 8, 30, tzinfo=UTC)),
        OpenExceptions("acme", "delayed", 1, T0),
        OpenExceptions("zeta", "delayed", 1, T0),
    ]
    assert all(e.oldest_scan is not None and e.oldest_scan.tzinfo is UTC for e in found)


def test_notification_outcomes_count_what_was_created_since_the_moment_by_channel_and_status(
    database: Database,
) -> None:
    merchant_id = _merchant(database, "acme")
    with database.write() as conn:
        for i, (channel, status, created) in enumerate(
            [
                ("email", "sent", T0),
                ("email", "sent", T0 + timedelta(minutes=1)),
                ("sms", "failed", T0),
                ("email", "sent", T0 - timedelta(seconds=1)),  # before the moment: not counted
            ]
        ):
            new_id = rows.notification(
                database, conn, merchant_id, key=f"k-{i}", channel=channel, to_address="x", status=status
            )
            conn.execute(
                notifications.update().where(notifications.c.id == new_id).values(created_at=created)
            )
    with database.read() as conn:
        outcomes = ops_store.notification_outcomes(conn, since=T0)
    assert sorted(outcomes, key=lambda o: (o.channel, o.status)) == [
        OutcomeCount("email", "sent", 2),
        OutcomeCount("sms", "failed", 1),
    ]


def test_outbox_messages_are_mapped_to_their_merchants_and_slugs_to_ids(database: Database) -> None:
    acme, zeta = _merchant(database, "acme"), _merchant(database, "zeta")
    ids: dict[int, int] = {}
    with database.write() as conn:
        for merchant_id in (acme, zeta):
            notification_id = rows.notification(
                database, conn, merchant_id, key=f"k-{merchant_id}", to_address="x"
            )
            assert notification_id is not None
            ids[merchant_id] = _outbox_message(conn, notification_id, merchant_id)
    with database.read() as conn:
        assert ops_store.outbox_owners(conn, [ids[acme], ids[zeta]]) == {ids[acme]: acme, ids[zeta]: zeta}
        assert ops_store.outbox_owners(conn, []) == {}
        assert ops_store.merchant_slugs(conn) == {acme: "acme", zeta: "zeta"}


def _outbox_message(conn: sa.Connection, notification_id: int, merchant_id: int) -> int:
    from store.schema import outbox_messages

    conn.execute(
        outbox_messages.insert().values(
            notification_id=notification_id,
            merchant_id=merchant_id,
            channel="email",
            to_address="x",
            text="hi",
            headers={},
            created_at=T0,
        )
    )
    return int(
        conn.execute(
            sa.select(outbox_messages.c.id).where(outbox_messages.c.notification_id == notification_id)
        ).scalar_one()
    )
