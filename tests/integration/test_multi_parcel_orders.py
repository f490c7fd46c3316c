"""Orders of several parcels, end to end on SQLite and PostgreSQL (``database`` runs each test on
both): the real worker code (``workers.processing.process_event``) and the real sender
(``workers.sending.Sender``, outbox channel) against a real database.

Whatever order the parcels' webhooks come in, however often each is repeated, and however late
each send runs (a send may wait in the queue while later webhooks are processed), the customer
gets exactly ONE order-level ``delivered`` per channel once every parcel is delivered, at most one
``partially_delivered`` per parcel and channel, none of them stale (a ``partially_delivered``
still waiting when the order became wholly delivered is suppressed as superseded), and no
per-parcel ``delivered``. Four workers processing the parcels' last scans at once on PostgreSQL
write the order-level message once: the unique idempotency key decides, not a check.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from store import merchants as merchant_store
from store import orders as order_store
from store.database import Database, utcnow
from store.merchants import Merchant
from store.schema import notifications
from tests.integration.conftest import SIGNING_KEY, VAULT
from tests.support.webhooks import label, track
from workers.processing import process_event
from workers.sending import Sender

START = datetime(2026, 3, 3, 9, 0)
CARRIERS = ("usps", "ups", "fedex", "dhl_express")
_serial = itertools.count(1)


def _parcel_events(ref: str, parcel: int, serial: int) -> list[tuple[str, str]]:
    """(event_id, body) of one parcel: its label, a transit scan, its delivery (hours apart per parcel)."""
    carrier = CARRIERS[parcel % len(CARRIERS)]
    tracking = f"9205{serial:08d}{parcel:04d}"
    txn = f"{serial:016x}{parcel:016x}"
    base = START + timedelta(hours=parcel)
    return [
        (f"{ref}-{parcel}-label", label(txn, tracking, ref, carrier=carrier)),
        (
            f"{ref}-{parcel}-transit",
            track(tracking, txn, f"{tracking}-t", base, carrier=carrier, metadata=f"Order {ref}"),
        ),
        (
            f"{ref}-{parcel}-delivered",
            track(
                tracking,
                txn,
                f"{tracking}-d",
                base + timedelta(days=1),
                "DELIVERED",
                "delivered",
                carrier=carrier,
                metadata=f"Order {ref}",
            ),
        ),
    ]


def _merchant(database: Database) -> Merchant:
    with database.write() as conn:
        merchant, _ = merchant_store.upsert(
            conn, "acme", vault=VAULT, name="Acme", profile={"order_ref_pattern": r"Order (\d+)"}
        )
    return merchant


def _register(database: Database, merchant: Merchant, ref: str) -> int:
    with database.write() as conn:
        order, _ = order_store.register(
            database,
            conn,
            merchant.id,
            ref,
            customer={"name": "Jane Doe", "email": "jane@example.com", "phone": "+14155550155"},
            notify_email=True,
            notify_sms=True,
        )
    return order.id


def _sender(database: Database) -> Sender:
    settings = replace(Settings(), database_url=database.url, signing_key=SIGNING_KEY)
    return Sender(settings, database, email=None, sms=None)  # the outbox: a row in the same database


def _send(sender: Sender, ids: list[int]) -> None:
    for notification_id in ids:
        sender.send(notification_id, on_deferred=lambda *_: None, on_alert=lambda *_: None)


def _rows(database: Database, order_id: int) -> list[sa.Row[tuple[object, ...]]]:
    with database.read() as conn:
        return list(
            conn.execute(
                sa.select(notifications)
                .where(
                    notifications.c.order_id == order_id,
                    notifications.c.kind.in_(["delivered", "partially_delivered"]),
                )
                .order_by(notifications.c.id)
            )
        )


def _assert_told_once(database: Database, order_id: int, ref: str, parcels: int) -> None:
    rows = _rows(database, order_id)
    delivered = [r for r in rows if r.kind == "delivered"]
    assert sorted(r.idempotency_key for r in delivered) == [
        f"{ref}:order:{parcels}:delivered:email",
        f"{ref}:order:{parcels}:delivered:sms",
    ], "one order-level delivered per channel, and no per-parcel delivered"
    assert {r.status for r in delivered} == {"sent"}
    email = next(r for r in delivered if r.channel == "email")
    assert f"All {parcels} parcels of order {ref} have been delivered." in email.body_text
    assert email.body_text.count("Track it: https://") == parcels, "every parcel listed with its link"
    assert email.body_text.count("arrived earlier") == parcels - 1, "the earlier ones marked, with dates"
    partial = [r for r in rows if r.kind == "partially_delivered"]
    per_parcel = [(r.shipment_id, r.channel) for r in partial]
    assert len(per_parcel) == len(set(per_parcel)) and len(partial) <= 2 * (parcels - 1)
    for r in partial:
        if r.status == "sent":  # went out while another parcel was still on the way: says so
            assert ("still on the way" if r.channel == "email" else "more on the way") in r.body_text
        else:  # waited in the queue until the order was wholly delivered: superseded, never stale
            assert (r.status, r.error) == ("suppressed", "superseded: the whole order was delivered")


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int], list[bool]]:
    """A parcel count, an interleaving of their events with repeats, and which sends wait.

    The labels (``transaction_created``, sent when the merchant buys them) come first, in any
    order: an order is known to have several parcels once their labels exist. A delivery before a
    sibling's label is an order of one parcel at that moment (told as before; see docs/api.md)."""
    parcels = draw(st.integers(2, 3))
    labels = draw(st.permutations([3 * p for p in range(parcels)]))
    tracks = draw(st.permutations([3 * p + k for p in range(parcels) for k in (1, 2)]))
    sequence = [*labels, *tracks]
    for index in draw(st.lists(st.integers(0, parcels * 3 - 1), max_size=4)):
        sequence.insert(draw(st.integers(parcels, len(sequence))), index)
    late = draw(st.lists(st.booleans(), min_size=len(sequence), max_size=len(sequence)))
    return parcels, sequence, late


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_any_interleaving_of_the_parcels_webhooks_tells_the_order_delivered_once(
    database: Database, case: tuple[int, list[int], list[bool]]
) -> None:
    parcels, sequence, late = case
    merchant = _merchant(database)
    serial = next(_serial)
    ref = f"7{serial:04d}"
    order_id = _register(database, merchant, ref)
    events = [e for p in range(parcels) for e in _parcel_events(ref, p, serial)]
    sender, waiting = _sender(database), list[int]()
    for index, is_late in zip(sequence, late, strict=True):
        event_id, body = events[index]
        now = utcnow()
        outcome = process_event(database, "acme", event_id, now, body, now)
        if is_late:
            waiting.extend(outcome.notification_ids)  # stays in the queue while later webhooks are processed
        else:
            _send(sender, list(outcome.notification_ids))
    _send(sender, waiting)
    _assert_told_once(database, order_id, ref, parcels)


def test_a_partially_delivered_waiting_when_the_order_is_completed_is_superseded(database: Database) -> None:
    """The stale case on its own: three parcels; the first arrives (told at once), the second
    arrives but its messages wait in the queue, the third completes the order: the waiting
    ``partially_delivered`` is suppressed and the order-level delivered goes out."""
    merchant = _merchant(database)
    serial = next(_serial)
    ref = f"8{serial:04d}"
    order_id = _register(database, merchant, ref)
    parcels = [_parcel_events(ref, p, serial) for p in range(3)]
    sender = _sender(database)

    def process(event: tuple[str, str]) -> list[int]:
        now = utcnow()
        return list(process_event(database, "acme", event[0], now, event[1], now).notification_ids)

    for events in parcels:
        _send(sender, process(events[0]) + process(events[1]))  # labels and transit scans
    _send(sender, process(parcels[0][2]))
    partial = [r for r in _rows(database, order_id) if r.kind == "partially_delivered"]
    assert {(r.channel, r.status) for r in partial} == {("email", "sent"), ("sms", "sent")}
    assert "2 more parcels are still on the way" in next(r for r in partial if r.channel == "email").body_text
    waiting = process(parcels[1][2])
    assert len(waiting) == 2
    _send(sender, waiting + process(parcels[2][2]))
    stale = [r for r in _rows(database, order_id) if r.id in waiting]
    assert {(r.kind, r.status, r.error) for r in stale} == {
        ("partially_delivered", "suppressed", "superseded: the whole order was delivered")
    }
    _assert_told_once(database, order_id, ref, 3)


def test_a_parcel_that_fails_completes_the_order_with_what_did_arrive(database: Database) -> None:
    """A lost parcel does not hold the order up: once the others are delivered the order-level
    delivered goes out, saying how many of the parcels were delivered."""
    merchant = _merchant(database)
    serial = next(_serial)
    ref = f"9{serial:04d}"
    order_id = _register(database, merchant, ref)
    a, b = _parcel_events(ref, 0, serial), _parcel_events(ref, 1, serial)
    lost = json.loads(b[1][1])
    lost["data"]["tracking_status"].update(
        object_id="lost-scan",
        status="FAILURE",
        substatus={"code": "package_lost", "text": "lost", "action_required": True},
    )
    lost["data"]["tracking_history"] = [lost["data"]["tracking_status"]]
    sender = _sender(database)
    for event_id, body in [*a[:2], *b[:2], ("lost", json.dumps(lost)), a[2]]:
        now = utcnow()
        _send(sender, list(process_event(database, "acme", event_id, now, body, now).notification_ids))
    rows = _rows(database, order_id)
    assert [(r.kind, r.channel, r.status) for r in rows] == [
        ("delivered", "email", "sent"),
        ("delivered", "sms", "sent"),
    ]
    assert f"Order {ref} is complete: 1 of its 2 parcels were delivered." in rows[0].body_text
    assert "not delivered (we wrote to you about it)" in rows[0].body_text


def _race(database: Database, last_scans: list[tuple[str, str]]) -> list[int]:
    """One thread per webhook, all released at once (a barrier); the notification ids written."""
    barrier = threading.Barrier(len(last_scans))
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def process(event_id: str, body: str) -> None:
        try:
            barrier.wait(timeout=30)
            now = utcnow()
            found = process_event(database, "acme", event_id, now, body, now).notification_ids
            with lock:
                ids.extend(found)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=process, args=scan) for scan in last_scans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    return ids


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_four_workers_racing_the_last_scans_write_the_order_level_delivered_once(database: Database) -> None:
    """PostgreSQL, 4 threads: the 4 parcels' delivery scans processed at the same moment (a
    barrier), several rounds. One order-level row per channel, every time."""
    merchant = _merchant(database)
    sender = _sender(database)
    for _round in range(4):
        serial = next(_serial)
        ref = f"6{serial:04d}"
        order_id = _register(database, merchant, ref)
        per_parcel = [_parcel_events(ref, p, serial) for p in range(4)]
        for events in per_parcel:
            for event_id, body in events[:2]:
                now = utcnow()
                _send(
                    sender, list(process_event(database, "acme", event_id, now, body, now).notification_ids)
                )
        ids = _race(database, [events[2] for events in per_parcel])
        _send(sender, ids)
        _assert_told_once(database, order_id, ref, 4)
