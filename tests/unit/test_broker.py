"""The broker: built by one function, never at import; chosen by URL scheme; the actors bind to
whatever broker a process sets (dramatiq's ``StubBroker`` in unit tests, the way dramatiq's own
tests run actors); every actor declares its retry policy instead of dramatiq's defaults."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from config import Settings
from tests.support.processes import python_ok
from workers import runtime as runtime_module
from workers.actors import bind
from workers.broker import QUEUES, build_broker, ping
from workers.middleware import OutcomeMiddleware


class Processed(OutcomeMiddleware):
    """Which actors a worker ran, and what they raised."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, BaseException | None]] = []

    def after_outcome(self, broker: dramatiq.Broker, message: Any, exception: BaseException | None) -> None:
        self.runs.append((message.actor_name, exception))


@pytest.fixture()
def stub_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubBroker]:
    """dramatiq's StubBroker with every actor bound to it; afterwards the actors go back to the
    broker they had (and the runtime to what it was)."""
    previous = dramatiq.broker.global_broker
    monkeypatch.setattr(runtime_module, "_runtime", None)
    broker = StubBroker()
    broker.emit_after("process_boot")
    bind(broker)
    yield broker
    broker.flush_all()
    broker.close()
    if previous is not None:
        bind(previous)
    dramatiq.set_broker(previous)  # type: ignore[arg-type]


def test_importing_every_module_that_sends_builds_no_broker_and_reads_no_setting() -> None:
    """In a fresh interpreter whose environment names a broker that cannot be built: importing
    the worker's, the scheduler's and both apps' modules builds nothing, and a message sent
    before a broker is bound is refused, not lost."""
    script = textwrap.dedent("""
        import dramatiq.broker
        import admin.app, ingest.app, workers.actors, workers.broker, workers.clock, workers.scheduler
        assert dramatiq.broker.global_broker is None, dramatiq.broker.global_broker
        from workers.actors import NotBound, send_notification
        try:
            send_notification.send(1)
        except NotBound as exc:
            print("refused:", exc)
    """)
    env = {
        "PATH": "/usr/bin:/bin",
        "PARCELHOOK_BROKER_URL": "kafka://nowhere",
        "PARCELHOOK_VAR_DIR": "/nonexistent",
    }
    done = python_ok(["-c", script], env=env)
    assert done.stdout.startswith("refused: send_notification: no broker yet"), done.stdout


def test_redis_urls_select_the_redis_broker_with_our_namespace() -> None:
    broker = build_broker(replace(Settings(), broker_url="redis://127.0.0.1:1/0"))
    assert isinstance(broker, RedisBroker)
    assert broker.namespace == "parcelhook"


def test_ping_asks_the_redis_brokers_own_client_and_names_a_broker_it_cannot_ask(redis_url: str) -> None:
    """``/readyz``'s broker probe: PING on the Redis broker's own client (a live one answers, a
    dead one raises); a broker ``build_broker`` never makes is refused by its type's name."""
    live = build_broker(replace(Settings(), broker_url=redis_url))
    ping(live)
    live.close()
    with pytest.raises(redis.ConnectionError):
        ping(build_broker(replace(Settings(), broker_url="redis://127.0.0.1:1/0")))
    with pytest.raises(TypeError, match="cannot ping a StubBroker"):
        ping(StubBroker())


def test_amqp_urls_select_rabbitmq_and_the_actors_bind_to_it_without_connecting(
    stub_broker: StubBroker,
) -> None:
    settings = replace(
        Settings(), broker_url="amqp://guest:guest@127.0.0.1:1/", redis_url="redis://127.0.0.1:1/0"
    )
    broker = build_broker(settings)
    assert isinstance(broker, RabbitmqBroker)
    bind(broker)
    assert set(broker.actors) == set(stub_broker.actors)
    assert set(broker.get_declared_queues()) == set(QUEUES)


def test_the_actors_send_to_and_run_on_the_broker_they_are_bound_to(stub_broker: StubBroker) -> None:
    from workers.actors import publish_platform_events, send_notification
    from workers.runtime import configure

    configure(replace(Settings(), database_url="sqlite://"))  # platform events off: the publisher returns
    processed = Processed()
    stub_broker.add_middleware(processed)
    send_notification.send(7)
    assert [m.args for m in _queued(stub_broker, "notifications")] == [(7,)]
    stub_broker.flush("notifications")  # no database here to send it from
    publish_platform_events.send()
    worker = dramatiq.Worker(stub_broker, worker_timeout=50)
    worker.start()
    try:
        stub_broker.join("maintenance", fail_fast=True)
        worker.join()
    finally:
        worker.stop()
    assert processed.runs == [("publish_platform_events", None)]


def test_every_actor_declares_its_retry_policy_instead_of_dramatiqs_defaults(stub_broker: StubBroker) -> None:
    """The list comes from the broker: a new actor left on dramatiq's defaults (20 retries over
    about a week, a 10 min time limit) fails here without anyone adding it."""
    actors = list(stub_broker.actors.values())
    assert {
        "process_event",
        "send_notification",
        "notification_exhausted",
        "run_maintenance",
        "publish_platform_events",
        "record_sms_status",
    } <= {a.actor_name for a in actors}
    for actor in actors:
        assert actor.queue_name in QUEUES, actor.actor_name
        assert "max_retries" in actor.options and actor.options["max_retries"] <= 8, actor.actor_name
        assert "min_backoff" in actor.options, actor.actor_name
        assert "time_limit" in actor.options, actor.actor_name
    assert (
        stub_broker.get_actor("send_notification").options["on_retry_exhausted"] == "notification_exhausted"
    )


def _queued(broker: StubBroker, queue: str) -> list[dramatiq.Message[Any]]:
    return [dramatiq.Message.decode(data) for data in list(broker.queues[queue].queue)]
