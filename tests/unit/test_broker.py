"""The broker is chosen by URL scheme; retry policies are declared per actor, not defaulted."""

from __future__ import annotations

from dataclasses import replace

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from config import Settings
from workers.broker import build_broker


def test_redis_urls_select_the_redis_broker_with_our_namespace() -> None:
    broker = build_broker(replace(Settings(), broker_url="redis://127.0.0.1:1/0"))
    assert isinstance(broker, RedisBroker)
    assert broker.namespace == "parcelhook"


def test_amqp_urls_select_rabbitmq() -> None:
    settings = replace(Settings(), broker_url="amqp://guest:guest@127.0.0.1:1/", redis_url="redis://127.0.0.1:1/0")
    assert isinstance(build_broker(settings), RabbitmqBroker)


def test_every_actor_declares_its_retry_policy_instead_of_dramatiqs_defaults() -> None:
    from workers import actors

    for actor in (actors.process_event, actors.send_notification, actors.run_maintenance,
                  actors.record_sms_status, actors.record_sms_keyword, actors.record_email_opt_out):
        assert actor.options["max_retries"] <= 8, actor.actor_name
        assert "time_limit" in actor.options, actor.actor_name
    assert actors.send_notification.options["on_retry_exhausted"] == "notification_exhausted"
