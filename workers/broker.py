"""The broker. The one module that reads settings at import: dramatiq needs the broker
before any actor is declared (DESIGN: workers/)."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from config import Settings, load_or_exit

QUEUES = ("events", "notifications", "maintenance")


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Redis by default; ``amqp://`` selects RabbitMQ. Retry policy is declared per actor."""
    if settings.broker_url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker: dramatiq.Broker = RabbitmqBroker(url=settings.broker_url)
    else:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from workers.recovery import RecoveringRedisBroker, Recovery
        from workers.telemetry import DeadLetterRecorder, Telemetry

        # Recovery in seconds (workers/recovery.py): a consumer that restarts after a broker
        # reconnect requeues what it had fetched and dropped; every worker runs dead-worker
        # maintenance every 5 s (not on a random 1 in 1,000 commands) against a 20 s
        # heartbeat timeout (not 60 s).
        broker = RecoveringRedisBroker(
            url=settings.broker_url,
            namespace=settings.broker_namespace,
            socket_connect_timeout=2,
            socket_timeout=5,
            # fail fast: the receiver must answer 503 in milliseconds, not after redis-py's
            # default retries (≈3.5 s per call against a refusing server)
            retry=Retry(NoBackoff(), 1),
        )
        broker.add_middleware(DeadLetterRecorder(Telemetry(broker.client)))
        broker.add_middleware(Recovery())
    broker.add_middleware(CurrentMessage())
    from workers.heartbeat import WorkerHeartbeat
    from workers.state import state_redis

    broker.add_middleware(WorkerHeartbeat(state_redis(settings), settings.broker_namespace))
    return broker


settings = load_or_exit()
broker = build_broker(settings)
from workers.logs import install as _redact_logs  # noqa: E402 - after the broker, like dramatiq's own set-up

_redact_logs()
dramatiq.set_broker(broker)
