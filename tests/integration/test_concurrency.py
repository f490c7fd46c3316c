"""Many workers applying events to the same shipment (and the same order) at once never lose an
update: row locks on PostgreSQL, BEGIN IMMEDIATE on SQLite. ``database`` runs each test on both."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from domain.payload import parse_event, parse_webhook
from domain.shipment import ShipmentState, apply
from store import merchants as merchant_store
from store import orders as order_store
from store import shipments as shipment_store
from store.database import Database, utcnow
from store.schema import deliveries, orders, shipment_scans, shipments
from tests.integration.conftest import VAULT
from tests.support.webhooks import label, track
from workers.processing import Outcome, process_event

THREADS = 8
PER_THREAD = 10
START = datetime(2026, 3, 3, 9, 0)
SUBSTATUSES = ("package_accepted", "package_departed", "package_arrived", "package_processing")


def in_order(bodies: list[str]) -> ShipmentState:
    state, now = ShipmentState.empty(), utcnow()
    for body in bodies:
        event = parse_event(parse_webhook(body))
        assert event is not None
        state, _, _ = apply(state, event, now)
    return state


def run_threads(work: list[list[tuple[str, str]]], db: Database, slug: str = "acme") -> list[Outcome]:
    """Each thread processes its own (event_id, body) list, all starting at once."""
    barrier = threading.Barrier(len(work))
    outcomes: list[Outcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(items: list[tuple[str, str]]) -> None:
        try:
            barrier.wait(timeout=30)
            for event_id, body in items:
                now = utcnow()
                outcome = process_event(db, slug, event_id, now, body, now)
                with lock:
                    outcomes.append(outcome)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(items,)) for items in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    assert not errors, errors
    return outcomes


def comparable(state: ShipmentState) -> dict[str, Any]:
    return state.to_dict()


@pytest.fixture()
def acme(database: Database) -> merchant_store.Merchant:
    with database.write() as conn:
        merchant, _ = merchant_store.upsert(
            conn, "acme", vault=VAULT, name="Acme", profile={"order_ref_pattern": r"Order (\d+)"}
        )
    return merchant


def _scans(
    tracking: str, transaction: str, thread: int, count: int, *, finish: str | None = None
) -> list[str]:
    bodies = []
    for i in range(count):
        at = START + timedelta(minutes=thread + THREADS * i)
        bodies.append(
            track(
                tracking,
                transaction,
                f"{tracking}-{thread}-{i}",
                at,
                substatus=SUBSTATUSES[(thread + i) % len(SUBSTATUSES)],
            )
        )
    if finish:
        at = START + timedelta(days=2)
        bodies.append(track(tracking, transaction, f"{tracking}-final", at, "DELIVERED", "delivered"))
    return bodies


@pytest.mark.parametrize("seed", [1, 2])
def test_many_threads_on_one_shipment_lose_no_update(database: Database, acme: Any, seed: int) -> None:
    rng = random.Random(seed)
    tracking, txn = "9205590164917399990001", "c0ffee00000000000000000000000001"
    per_thread = [
        _scans(tracking, txn, t, PER_THREAD, finish="delivered" if t == 3 else None) for t in range(THREADS)
    ]
    # a delivery_attempted in the middle opens an exception that a later scan clears
    attempt = track(
        tracking,
        txn,
        f"{tracking}-attempt",
        START + timedelta(hours=1, seconds=30),
        "TRANSIT",
        "delivery_attempted",
    )
    per_thread[5].append(attempt)
    everything = [b for bodies in per_thread for b in bodies]
    work = []
    for t, bodies in enumerate(per_thread):
        shuffled = bodies[:]
        rng.shuffle(shuffled)
        work.append([(f"thread{t}-event{i}", body) for i, body in enumerate(shuffled)])

    outcomes = run_threads(work, database)

    assert [o.status for o in outcomes] == ["processed"] * len(everything)
    with database.read() as conn:
        [row] = conn.execute(shipments.select()).all()
        scan_ids = [r.scan_id for r in conn.execute(sa.select(shipment_scans.c.scan_id))]
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == len(
            everything
        )
    expected = in_order(
        sorted(everything, key=lambda b: json.loads(b)["data"]["tracking_status"]["status_date"])
    )
    stored = shipment_store._row(row).state
    assert comparable(stored) == comparable(expected)
    assert stored.status is not None and stored.status.value == "delivered" and stored.exception is None
    assert sorted(scan_ids) == sorted(set(scan_ids)) and len(scan_ids) == len(everything), "every scan once"
    assert row.version == len(everything), "one version step per applied event: none lost"
    with database.read() as conn:
        changes = shipment_store.timeline(conn, row.id)
    opened = [c for c in changes if c["kind"] == "exception_opened"]
    assert len(opened) <= 1, (
        "the attempt opens its exception at most once (it may arrive stale: history only)"
    )
    assert sum(c["kind"] == "history_added" for c in changes) == len(everything)


def test_the_first_events_of_a_new_shipment_race_to_create_it(database: Database, acme: Any) -> None:
    """Every thread's first event finds no shipment: exactly one row comes out, nothing fails."""
    for round_ in range(3):
        tracking, txn = f"92055901649173999900{round_:02d}", f"c0ffee000000000000000000000001{round_:02d}"
        work = [
            [(f"r{round_}-t{t}", track(tracking, txn, f"{tracking}-{t}", START + timedelta(minutes=t)))]
            for t in range(THREADS)
        ]
        outcomes = run_threads(work, database)
        assert {o.status for o in outcomes} == {"processed"}
        with database.read() as conn:
            rows = conn.execute(shipments.select().where(shipments.c.tracking_number == tracking)).all()
        assert len(rows) == 1 and rows[0].version == THREADS


def test_two_shipments_of_one_order_updated_at_once_aggregate_correctly(
    database: Database, acme: Any
) -> None:
    a = ("9205590164917388880001", "d00d0000000000000000000000000001")
    b = ("9205590164917388880002", "d00d0000000000000000000000000002")
    # labels race too: the order row is created by whichever commits first
    work_a: list[list[str]] = [[label(a[1], a[0], "5001")], [], []]
    work_b: list[list[str]] = [[label(b[1], b[0], "5001")], [], []]
    for t in range(3):
        work_a[t] += _scans(a[0], a[1], t, 5, finish="delivered" if t == 0 else None)
        work_b[t] += _scans(b[0], b[1], t, 5)
    work = [
        [(f"{name}-{t}-{i}", body) for i, body in enumerate(bodies)]
        for name, lists in (("a", work_a), ("b", work_b))
        for t, bodies in enumerate(lists)
    ]
    run_threads(work, database)

    with database.read() as conn:
        [order] = conn.execute(orders.select()).all()
        siblings = shipment_store.for_order(conn, order.id)
    assert sorted(s.state.status.value for s in siblings if s.state.status) == ["delivered", "in_transit"]
    assert (order.ref, order.status, order.exception) == ("5001", "partially_delivered", None)
    with database.read() as conn:
        assert order_store.get(conn, acme.id, "5001").status == "partially_delivered"  # type: ignore[union-attr]


@pytest.mark.redis
def test_an_order_put_while_its_shipments_are_processed_neither_deadlocks_nor_loses(
    database: Database, acme: Any, make_settings: Callable[..., Any], broker: Any
) -> None:
    """The admin PUT (register + catch-up) and workers lock the same order and shipments at once."""
    from admin.app import create_app
    from admin.services import Services

    settings = make_settings(database.url)
    client = create_app(
        settings, services=Services.from_settings(settings, database, broker.client), broker=broker
    ).test_client()
    a = ("9205590164917377770001", "e00e0000000000000000000000000001")
    now = utcnow()
    process_event(database, "acme", "label-a", now, label(a[1], a[0], "6001"), now)
    scans = [[(f"s{t}-{i}", b) for i, b in enumerate(_scans(a[0], a[1], t, 6))] for t in range(4)]
    statuses: list[int] = []

    def put_many() -> None:
        for n in range(6):
            response = client.put(
                "/api/merchants/acme/orders/6001",
                json={"customer": {"email": f"jane{n}@example.com"}},
                headers={"Authorization": f"Bearer {settings.admin_token}"},
            )
            statuses.append(response.status_code)

    putter = threading.Thread(target=put_many)
    putter.start()
    run_threads(scans, database)
    putter.join(60)
    assert not putter.is_alive()
    assert statuses[0] in (200, 201) and set(statuses[1:]) == {200} and len(statuses) == 6, statuses
    with database.read() as conn:
        [row] = conn.execute(shipments.select()).all()
        order = order_store.get(conn, acme.id, "6001")
    assert row.version == 1 + 24
    assert order is not None and order.registered and order.customer["email"] == "jane5@example.com"
    assert order.status == "shipped"
