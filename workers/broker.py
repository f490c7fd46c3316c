"""The broker: built by ``build_broker(settings)``, never at import.

Who builds it: the worker process (``workers/main.py``), the scheduler process
(``workers/clock.py``) and the two apps' factories; each then binds the actors to it
(``workers.actors.bind``). Importing this module reads no setting and opens no connection."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage, Retries

from config import Settings

#: Every queue an actor uses (``workers/actors.py``), in the order ops tools list them.
QUEUES: tuple[str, ...] = ("events", "notifications", "maintenance")


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Redis by default; ``amqp://`` selects RabbitMQ. Retry policy is declared per actor."""
    from workers.heartbeat import WorkerHeartbeat
    from workers.logs import RetryLogging
    from workers.logs import install as redact_logs
    from workers.middleware import GracefulStop
    from workers.recovery import with_durable_retries
    from workers.state import state_redis

    if settings.broker_url.startswith("amqp"):
        from workers.middleware import DeadLetterRecorder
        from workers.rabbitmq_publisher import PooledPublisherRabbitmqBroker
        from workers.telemetry import Telemetry

        # Publishing connections are pooled per process, not kept per thread: under the `web`
        # process's gevent workers every request is a greenlet of its own (dramatiq #381).
        # confirm_delivery: an enqueue returns only once RabbitMQ has taken the message, so the
        # receiver's 200 means what it says (it is off in dramatiq by default).
        broker: dramatiq.Broker = PooledPublisherRabbitmqBroker(
            url=settings.broker_url, confirm_delivery=True
        )
        broker.add_middleware(DeadLetterRecorder(Telemetry(state_redis(settings))))
    else:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from workers.middleware import DeadLetterRecorder
        from workers.recovery import RecoveringRedisBroker, Recovery
        from workers.telemetry import Telemetry

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
    # A retry is enqueued before its original is acked, even across a broker outage.
    with_durable_retries(broker)
    broker.add_middleware(CurrentMessage())
    # One WARNING per retry, a traceback only when a message is given up (workers/logs.py). Before
    # Retries, because after-hooks run in reverse order: it must see Retries' decision.
    broker.add_middleware(RetryLogging(), before=Retries)
    broker.add_middleware(WorkerHeartbeat(state_redis(settings), settings.broker_namespace))
    broker.add_middleware(GracefulStop())  # a process-group SIGTERM stops gracefully (workers/middleware.py)
    redact_logs()  # dramatiq's loggers exist now: no message body in any log line (workers/logs.py)
    return broker


def ping(broker: dramatiq.Broker) -> None:
    """Raise unless the broker answers (``/readyz``): RabbitMQ through the publisher pool, Redis
    with a ``PING`` on the broker's own client."""
    from dramatiq.brokers.redis import RedisBroker

    from workers.rabbitmq_publisher import PooledPublisherRabbitmqBroker

    if isinstance(broker, PooledPublisherRabbitmqBroker):
        broker.ping()
    elif isinstance(broker, RedisBroker):
        broker.client.ping()
    else:
        raise TypeError(f"cannot ping a {type(broker).__name__}: not a broker build_broker() makes")
