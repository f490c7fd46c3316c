"""Platform events: what platforms hear about their orders, over kombu.

Two halves of a transactional outbox (``store/platform_events.py``):

* ``shipment_events`` builds the rows that ``workers/processing.py`` inserts in the SAME
  transaction as the state change (one per status change / exception opened / exception
  cleared, and one ``order.status_changed`` when the order's aggregate status moved). A
  rolled-back change therefore never produces an event, and a committed one always does.
* ``publish_pending`` (run by the ``publish_platform_events`` actor after each commit that
  wrote rows, and by the scheduler's reconciliation) publishes unpublished rows in id order
  to the topic exchange ``parcelhook.events`` with routing key ``<merchant>.<event type>``
  and sets ``published_at`` after each publish returns.

Delivery is AT LEAST ONCE: a crash between "the broker took it" and "published_at
committed" publishes the row again. Every message carries its ``event_id`` (also the AMQP
``message_id``); consumers dedupe on it. Order is kept per shipment and per order (their
rows are written under the shipment/order row locks, and publishers are serialized);
there is no global order across orders.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from domain.shipment import Change, OpenException, ShipmentState
from domain.vocabulary import ChangeKind
from store import platform_events as store
from store.database import Database, utcnow
from store.platform_events import NewPlatformEvent

EXCHANGE = "parcelhook.events"
ORDER_STATUS_CHANGED = "order.status_changed"
SHIPMENT_EVENT_TYPES: Mapping[ChangeKind, str] = {
    ChangeKind.STATUS_CHANGED: "shipment.status_changed",
    ChangeKind.EXCEPTION_OPENED: "shipment.exception_opened",
    ChangeKind.EXCEPTION_CLEARED: "shipment.exception_cleared",
}

#: rows published per transaction (the publisher lock is held for one chunk at a time)
CHUNK = 100
#: kombu's retry of one publish (bounded: the publisher holds its lock meanwhile)
PUBLISH_RETRY_POLICY: Mapping[str, Any] = {
    "max_retries": 2,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 1,
}
CONNECT_RETRIES = 2
CONNECT_TIMEOUT_S = 5


class PlatformEventsUnavailable(Exception):
    """The platform events broker could not be reached (transient: the actor retries)."""


# ---------------------------------------------------------------- building (pure)


def new_event_id() -> str:
    return f"pe-{uuid.uuid4().hex}"


def shipment_events(
    *,
    merchant_slug: str,
    order: tuple[int, str, str] | None,
    order_change: tuple[str, str] | None,
    shipment_id: int,
    state: ShipmentState,
    exception_before: OpenException | None,
    changes: Sequence[Change],
    now: datetime,
) -> list[NewPlatformEvent]:
    """The events one committed shipment update produces, in the order they happened.

    ``order`` is ``(id, ref, status after the update)``; ``order_change`` is ``(old, new)``
    when the aggregate status moved. Each shipment event's ``shipment`` block is the shipment
    as of that change (one webhook may carry several scans); the ``order`` block is the order
    after the whole update.
    """
    order_block = {"ref": order[1], "status": order[2]} if order else None
    order_id = order[0] if order else None
    identity = {"carrier": state.carrier, "tracking_number": state.tracking_number}
    exception = exception_before.to_contract() if exception_before else None
    events: list[NewPlatformEvent] = []
    for change in changes:
        if change.kind == ChangeKind.EXCEPTION_OPENED and change.exception is not None:
            exception = {
                "class": change.exception.value,
                "action_required": change.action_required,
                "since": change.at.isoformat(),
                "detail": change.detail,
            }
        elif change.kind == ChangeKind.EXCEPTION_CLEARED:
            exception = None
        event_type = SHIPMENT_EVENT_TYPES.get(change.kind)
        if event_type is None:
            continue  # history_added: a scan that moved nothing
        shipment = {**identity, "status": _value(change.to_status), "exception": exception}
        events.append(
            _event(
                event_type,
                merchant_slug,
                change.at,
                order_id,
                order_block,
                shipment_id,
                shipment,
                change.to_dict(),
            )
        )
    if order_change is not None and order_change[0] != order_change[1]:
        moved = [c.at for c in changes if c.kind in SHIPMENT_EVENT_TYPES]
        occurred = max(moved) if moved else (state.last_event_at or now)
        shipment = {
            **identity,
            "status": _value(state.status),
            "exception": state.exception.to_contract() if state.exception else None,
        }
        change_block = {"from_status": order_change[0], "to_status": order_change[1]}
        events.append(
            _event(
                ORDER_STATUS_CHANGED,
                merchant_slug,
                occurred,
                order_id,
                order_block,
                shipment_id,
                shipment,
                change_block,
            )
        )
    return events


def _value(status: Any) -> str | None:
    return status.value if status is not None else None


def _event(
    event_type: str,
    merchant_slug: str,
    occurred_at: datetime,
    order_id: int | None,
    order: Mapping[str, Any] | None,
    shipment_id: int,
    shipment: Mapping[str, Any],
    change: Mapping[str, Any],
) -> NewPlatformEvent:
    payload = {
        "event_id": new_event_id(),
        "type": event_type,
        "occurred_at": occurred_at.isoformat(),
        "merchant": merchant_slug,
        "order": dict(order) if order else None,
        "shipment": dict(shipment),
        "change": dict(change),
    }
    return NewPlatformEvent(event_type, order_id, shipment_id, payload)


def routing_key(merchant_slug: str, event_type: str) -> str:
    return f"{merchant_slug}.{event_type}"


# ---------------------------------------------------------------- publishing (I/O)


def exchange() -> Any:
    from kombu.entity import Exchange

    return Exchange(EXCHANGE, "topic", durable=True)


def connection(url: str) -> Any:
    """A kombu connection; AMQP publishes with publisher confirms, so "returned" means "taken"."""
    from kombu.connection import Connection

    scheme = url.split(":", 1)[0]
    options: dict[str, Any] = {}
    if scheme.startswith("amqp"):
        options["confirm_publish"] = True
    elif scheme.startswith("redis"):
        options = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": CONNECT_TIMEOUT_S}
    return Connection(url, connect_timeout=CONNECT_TIMEOUT_S, transport_options=options)


def publish_pending(db: Database, url: str, *, limit: int = 500) -> int:
    """Publish up to ``limit`` unpublished events in id order; returns how many were published.

    Raises ``PlatformEventsUnavailable`` when the broker cannot be reached or refuses a
    publish; the rows published before that are marked, the rest stay pending.
    """
    with db.read() as conn:
        if not store.has_pending(conn):
            return 0  # the common case: no broker connection, no lock
    published = 0
    with connection(url) as conn_:
        try:
            conn_.ensure_connection(
                max_retries=CONNECT_RETRIES, interval_start=0.2, interval_step=0.5, interval_max=1
            )
        except Exception as exc:
            raise PlatformEventsUnavailable(
                f"platform events broker unreachable: {type(exc).__name__}"
            ) from exc
        from kombu.messaging import Producer

        producer = Producer(conn_.default_channel)
        ex = exchange()
        while published < limit:
            size = min(CHUNK, limit - published)
            done, error = _publish_chunk(db, producer, ex, size)
            published += done
            if error is not None:
                raise PlatformEventsUnavailable(
                    f"publishing failed: {type(error).__name__}: {error}"
                ) from error
            if done < size:
                break
    return published


def _publish_chunk(db: Database, producer: Any, ex: Any, size: int) -> tuple[int, Exception | None]:
    """Publish the oldest pending rows, one publisher at a time, and mark each.
    A failed publish ends the chunk but still commits the marks of those before it.

    PostgreSQL: one transaction holding a transaction-level advisory lock (writers are not
    blocked by it). SQLite: a write transaction would block every writer for as long as the
    broker takes, so publishers are serialized by a file lock beside the database instead,
    rows are read, published outside any transaction, and marked in one short write."""
    if db.is_sqlite:
        with _sqlite_publisher_lock(db):
            with db.read() as conn:
                events = store.pending(conn, limit=size)
            done, error = _publish_each(producer, ex, events)
            if done:
                with db.write() as conn:
                    for event in events[:done]:
                        store.mark_published(conn, event.id, utcnow())
            return done, error
    with db.write() as conn:
        store.lock_publisher(db, conn)
        events = store.pending(conn, limit=size)
        done, error = _publish_each(producer, ex, events)
        for event in events[:done]:
            store.mark_published(conn, event.id, utcnow())
    return done, error


def _publish_each(producer: Any, ex: Any, events: Any) -> tuple[int, Exception | None]:
    done = 0
    for event in events:
        merchant = str(event.payload.get("merchant", ""))
        try:
            producer.publish(
                dict(event.payload),
                exchange=ex,
                routing_key=routing_key(merchant, event.event_type),
                serializer="json",
                delivery_mode=2,
                message_id=event.event_id,
                retry=True,
                retry_policy=dict(PUBLISH_RETRY_POLICY),
                declare=[ex],
            )
        except Exception as exc:
            return done, exc
        done += 1
    return done, None


@contextmanager
def _sqlite_publisher_lock(db: Database, timeout_s: float = 30.0) -> Iterator[None]:
    import fcntl
    import time

    path = f"{db.engine.url.database}.publisher.lock"
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PlatformEventsUnavailable("another publisher holds the lock") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
