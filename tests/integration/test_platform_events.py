"""Platforms hear their order events over kombu (a transactional outbox, published at least once).

Real Redis as the platforms' broker (kombu's redis transport on another Redis database than the
dramatiq broker), a real worker, both databases. The tests marked ``on_both_brokers`` run again
with the worker on RabbitMQ, publishing to another virtual host of the same node (kombu's amqp
transport): a deployment on RabbitMQ uses it for both.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from store.schema import platform_events, shipments
from tests.fixtures.shippo import scenario
from tests.integration.conftest import VAULT, System, hmac_secret, on_both_brokers
from workers.scheduler import Followups, detect_stalls, reconcile

if TYPE_CHECKING:
    from workers.runtime import Runtime

pytestmark = pytest.mark.redis

ORDER_REF_PATTERN = r"Order (\d+)"

#: (routing key, shipment status, open exception, the change) of one platform event
Summary = tuple[str, str | None, str | None, dict[str, Any]]


def moved(
    what: str, status: str, open_exception: str | None, from_status: str | None, to_status: str
) -> Summary:
    """A shipment or order status change, as :func:`_summary` reads it off the message."""
    change = {"from_status": from_status, "to_status": to_status}
    return f"acme.{what}.status_changed", status, open_exception, change


def exception(verb: str, status: str, open_exception: str | None, exception: str) -> Summary:
    """A shipment exception opened or cleared, as :func:`_summary` reads it off the message."""
    return f"acme.shipment.exception_{verb}", status, open_exception, {"exception": exception}


#: attempt-then-delivered, webhook by webhook: (routing key, shipment status and open exception as of
#: the change, the change). The pre-transit scan moves nothing; the attempt is a sideways move to
#: in_transit that opens the exception; the next out-for-delivery scan moves on and clears it.
EXPECTED = [
    moved("shipment", "label_created", None, None, "label_created"),
    moved("order", "label_created", None, "awaiting_shipment", "shipped"),
    moved("shipment", "in_transit", None, "label_created", "in_transit"),
    moved("shipment", "out_for_delivery", None, "in_transit", "out_for_delivery"),
    moved("order", "out_for_delivery", None, "shipped", "out_for_delivery"),
    moved("shipment", "in_transit", None, "out_for_delivery", "in_transit"),
    exception("opened", "in_transit", "delivery_attempted", "delivery_attempted"),
    moved("order", "in_transit", "delivery_attempted", "out_for_delivery", "exception"),
    moved("shipment", "out_for_delivery", "delivery_attempted", "in_transit", "out_for_delivery"),
    exception("cleared", "out_for_delivery", None, "delivery_attempted"),
    moved("order", "out_for_delivery", None, "exception", "out_for_delivery"),
    moved("shipment", "delivered", None, "out_for_delivery", "delivered"),
    moved("order", "delivered", None, "out_for_delivery", "delivered"),
]


@pytest.fixture()
def events_url(request: pytest.FixtureRequest, redis_url: str, broker_name: str) -> Iterator[str]:
    """The platforms' broker: the test Redis, database 1 (dramatiq uses 0); or, parametrized
    with ``"amqp"`` or when the worker runs on RabbitMQ, a virtual host of its own on the
    session's RabbitMQ (kombu's amqp transport)."""
    default = "amqp" if broker_name == "rabbitmq" else "redis"
    if getattr(request, "param", default) == "amqp":
        node = request.getfixturevalue("rabbitmq_service")
        with node.vhost() as vhost:  # not the worker's virtual host: its own
            yield str(node.amqp_url(vhost))
        return
    yield redis_url.rsplit("/", 1)[0] + "/1"


def _publishing_to(
    make_system: Callable[..., System], database_url: str, url: str
) -> tuple[System, dict[str, Any]]:
    """A system publishing platform events to ``url``, with its worker running, and its
    merchant (unsigned webhooks; orders found by "Order <n>")."""
    system = make_system(database_url, platform_events_url=url)
    merchant = system.create_merchant(order_ref_pattern=ORDER_REF_PATTERN)
    system.start_worker()
    return system, merchant


@pytest.fixture()
def publishing(
    make_system: Callable[..., System], database_url: str, events_url: str
) -> tuple[System, dict[str, Any]]:
    """:func:`_publishing_to` the platforms' broker."""
    return _publishing_to(make_system, database_url, events_url)


@pytest.fixture()
def publishing_nowhere(
    make_system: Callable[..., System], database_url: str, broker_down: str
) -> tuple[System, dict[str, Any]]:
    """:func:`_publishing_to` a broker that is down: the events stay in the outbox."""
    return _publishing_to(make_system, database_url, broker_down)


@pytest.fixture()
def platform(events_url: str) -> Iterator[Callable[[], list[Any]]]:
    """A platform's queue bound to ``acme.#`` (declared before anything is published: a topic
    exchange drops what no queue is bound for); returns a function taking what arrived."""
    connection = Connection(events_url)
    exchange = Exchange("parcelhook.events", "topic", durable=True)
    queue = Queue("platform-acme", exchange=exchange, routing_key="acme.#", durable=True)
    bound = queue(connection.default_channel)
    bound.declare()

    def received() -> list[Any]:
        messages = []
        while (message := bound.get(no_ack=True, accept=["json"])) is not None:
            messages.append(message)
        return messages

    yield received
    connection.release()


@pytest.fixture()
def broker_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """A platform events URL nothing listens on; the publisher actor gives up at once instead of
    retrying with backoff for minutes (``System.drain`` would wait for every retry)."""
    from workers.actors import publish_platform_events

    monkeypatch.setitem(publish_platform_events.options, "max_retries", 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/1"


def _rows(system: System) -> list[Any]:
    with system.database.read() as conn:
        return list(conn.execute(sa.select(platform_events).order_by(platform_events.c.id)))


def _post_one_by_one(system: System, merchant: dict[str, Any], bodies: list[bytes], **kwargs: Any) -> None:
    for body in bodies:
        assert system.post(merchant, body, **kwargs).get_json()["status"] == "queued"
        system.drain()  # one webhook at a time, so the events have one expected order


def _summary(message: Any) -> Summary:
    payload = message.payload
    change = payload["change"]
    keys = (
        ("from_status", "to_status") if "status" in message.delivery_info["routing_key"] else ("exception",)
    )
    return (
        message.delivery_info["routing_key"],
        payload["shipment"]["status"],
        (payload["shipment"]["exception"] or {}).get("class"),
        {k: change[k] for k in keys},
    )


@on_both_brokers
@pytest.mark.parametrize("events_url", ["redis", "amqp"], indirect=True)
def test_a_shipment_lifetime_reaches_the_platform_as_ordered_events_once_each(
    make_system: Callable[..., System], database_url: str, events_url: str, platform: Callable[[], list[Any]]
) -> None:
    system = make_system(database_url, platform_events_url=events_url)
    secret = hmac_secret()
    merchant = system.create_merchant(hmac_secrets=[secret], order_ref_pattern=ORDER_REF_PATTERN)
    system.start_worker()
    bodies = scenario("attempt-then-delivered")
    for body in bodies:
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "queued"
        # Shippo retries and duplicate registrations: answered `duplicate`, no second event
        assert system.post(merchant, body, secret=secret).get_json()["status"] == "duplicate"
        system.drain()

    messages = platform()
    assert [_summary(m) for m in messages] == EXPECTED
    payloads = [m.payload for m in messages]
    assert len({p["event_id"] for p in payloads}) == len(payloads)
    assert [m.properties["message_id"] for m in messages] == [p["event_id"] for p in payloads]
    assert all(m.properties["delivery_mode"] == 2 for m in messages)
    assert [m.payload["type"] for m in messages] == [
        m.delivery_info["routing_key"][len("acme.") :] for m in messages
    ]
    first = payloads[0]
    assert set(first) == {"event_id", "type", "occurred_at", "merchant", "order", "shipment", "change"}
    assert first["merchant"] == "acme"
    assert first["order"] == {"ref": "1002", "status": "shipped"}
    assert first["shipment"]["carrier"] == "ups"
    assert first["shipment"]["tracking_number"]
    opened = next(p for p in payloads if p["type"] == "shipment.exception_opened")
    assert opened["shipment"]["exception"]["action_required"] in (True, False)
    assert opened["occurred_at"] == opened["change"]["at"] == opened["shipment"]["exception"]["since"]
    assert payloads[-1]["order"] == {"ref": "1002", "status": "delivered"}
    datetime.fromisoformat(payloads[-1]["occurred_at"])

    rows = _rows(system)
    assert [r.payload["event_id"] for r in rows] == [p["event_id"] for p in payloads]
    assert all(r.published_at is not None for r in rows)
    assert all(r.order_id is not None and r.shipment_id is not None for r in rows)


@on_both_brokers
def test_a_redelivered_worker_message_and_a_second_publisher_publish_nothing_twice(
    platform: Callable[[], list[Any]], events_url: str, publishing: tuple[System, dict[str, Any]]
) -> None:
    from workers.actors import process_event
    from workers.platform_events import publish_pending

    system, merchant = publishing
    label = scenario("attempt-then-delivered")[0]
    assert system.post(merchant, label).get_json()["status"] == "queued"
    system.drain()
    with system.database.read() as conn:
        [delivery] = conn.execute(sa.text("SELECT event_id FROM deliveries")).fetchall()
    # dramatiq delivers at least once: the same message again is a no-op (unique delivery row)
    process_event.send("acme", delivery.event_id, datetime.now(UTC).isoformat(), label.decode())
    system.drain()
    assert publish_pending(system.database, events_url) == 0
    assert [m.delivery_info["routing_key"] for m in platform()] == [
        "acme.shipment.status_changed",
        "acme.order.status_changed",
    ]


@on_both_brokers
def test_with_the_feature_off_no_event_is_written(system: System, platform: Callable[[], list[Any]]) -> None:
    assert system.settings.platform_events_url is None
    merchant = system.create_merchant(order_ref_pattern=ORDER_REF_PATTERN)
    system.start_worker()
    _post_one_by_one(system, merchant, scenario("attempt-then-delivered"))
    assert _rows(system) == []
    assert platform() == []
    order = system.admin.get("/api/merchants/acme/orders/1002", headers=system.auth()).get_json()
    assert order["status"] == "delivered"  # the pipeline itself is unchanged


@on_both_brokers
def test_a_broker_outage_keeps_the_events_until_a_later_publish_sends_them_once(
    platform: Callable[[], list[Any]],
    events_url: str,
    broker_down: str,
    publishing_nowhere: tuple[System, dict[str, Any]],
) -> None:
    from workers.platform_events import PlatformEventsUnavailable, publish_pending

    system, merchant = publishing_nowhere
    bodies = scenario("attempt-then-delivered")[:3]
    for body in bodies:  # one at a time: the exact event order below depends on it
        assert system.post(merchant, body).get_json()["status"] == "queued"
        system.drain()  # the publisher actor fails (and retries later, with backoff): state is committed anyway
    order = system.admin.get("/api/merchants/acme/orders/1002", headers=system.auth()).get_json()
    assert order["status"] == "shipped"
    rows = _rows(system)
    assert [r.event_type for r in rows] == [
        "shipment.status_changed",
        "order.status_changed",
        "shipment.status_changed",
    ]
    assert all(r.published_at is None for r in rows)
    # the publisher gave up without a dead letter: reconciliation is what catches up
    assert system.dead_letters("maintenance") == 0
    with pytest.raises(PlatformEventsUnavailable):
        publish_pending(system.database, broker_down)
    assert all(r.published_at is None for r in _rows(system))
    assert platform() == []

    assert publish_pending(system.database, events_url) == 3
    assert publish_pending(system.database, events_url) == 0
    rows = _rows(system)
    assert all(r.published_at is not None for r in rows)
    assert [m.payload["event_id"] for m in platform()] == [r.payload["event_id"] for r in rows]


@on_both_brokers
def test_concurrent_publishers_publish_each_row_once_in_order(
    platform: Callable[[], list[Any]],
    events_url: str,
    publishing_nowhere: tuple[System, dict[str, Any]],  # nothing published on the way
) -> None:
    from workers.platform_events import publish_pending

    system, merchant = publishing_nowhere
    _post_one_by_one(system, merchant, scenario("attempt-then-delivered"))
    rows = _rows(system)
    assert len(rows) == len(EXPECTED)
    counts: list[int] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            counts.append(publish_pending(system.database, events_url, limit=4))
            counts.append(publish_pending(system.database, events_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(counts) == len(rows)
    assert [m.payload["event_id"] for m in platform()] == [r.payload["event_id"] for r in rows]


@dataclass(frozen=True)
class CatchUp:
    """The first ``webhooks`` of attempt-then-delivered processed (the platform heard the first
    ``heard_before`` of EXPECTED), then something goes ``wrong`` in the database, and the
    scheduler's ``job`` catches up: the platform hears ``heard`` (routing key, shipment status,
    open exception)."""

    webhooks: int
    heard_before: int
    wrong: Callable[[], sa.Executable]
    job: Callable[[Runtime], Followups]
    heard: list[tuple[str, str | None, str | None]]


CATCHING_UP = [
    pytest.param(
        CatchUp(
            webhooks=1,
            heard_before=2,
            wrong=lambda: platform_events.update().values(published_at=None),  # died before its enqueue
            job=reconcile,
            heard=[  # again: at least once, consumers dedupe on event_id
                ("acme.shipment.status_changed", "label_created", None),
                ("acme.order.status_changed", "label_created", None),
            ],
        ),
        id="reconciliation publishes what a lost message left behind",
    ),
    pytest.param(
        CatchUp(
            webhooks=3,
            heard_before=3,
            wrong=lambda: shipments.update().values(last_scan_at=datetime.now(UTC) - timedelta(days=5)),
            job=detect_stalls,
            heard=[
                ("acme.shipment.exception_opened", "in_transit", "stalled"),
                ("acme.order.status_changed", "in_transit", "stalled"),
            ],
        ),
        id="a stalled shipment is an event too",
    ),
]


@on_both_brokers
@pytest.mark.parametrize("case", CATCHING_UP)
def test_a_scheduler_job_publishes_the_events_of_what_it_catches_up_on(
    platform: Callable[[], list[Any]], publishing: tuple[System, dict[str, Any]], case: CatchUp
) -> None:
    from workers.actors import enqueue_followups

    system, merchant = publishing
    _post_one_by_one(system, merchant, scenario("attempt-then-delivered")[: case.webhooks])
    assert [_summary(m) for m in platform()] == EXPECTED[: case.heard_before]
    with system.database.write() as conn:
        conn.execute(case.wrong())
    enqueue_followups(case.job(system.runtime))  # as the scheduler's actor runs it
    system.drain()
    assert [_summary(m)[:3] for m in platform()] == case.heard
    assert all(r.published_at is not None for r in _rows(system))


def test_a_rolled_back_change_writes_no_event(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from store import merchants as merchant_store
    from store.database import Database, utcnow
    from workers.processing import process_event

    db = Database(database_url)
    try:
        with db.write() as conn:
            merchant_store.upsert(
                conn, "acme", vault=VAULT, name="Acme", profile={"order_ref_pattern": ORDER_REF_PATTERN}
            )
        label = scenario("attempt-then-delivered")[0].decode()

        class Boom(Exception):
            pass

        now = utcnow()
        real = db.write

        def failing_write() -> Any:
            from contextlib import contextmanager

            @contextmanager
            def cm() -> Iterator[Any]:
                with real() as conn:
                    yield conn
                    raise Boom  # after the work, before the commit

            return cm()

        with monkeypatch.context() as patch:
            patch.setattr(db, "write", failing_write)
            with pytest.raises(Boom):
                process_event(db, "acme", "evt-1", now, label, now, platform_events=True)
        with db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(platform_events)).scalar_one() == 0
        outcome = process_event(db, "acme", "evt-1", now, label, now, platform_events=True)
        assert outcome.platform_events == 2
    finally:
        db.dispose()
