"""The Redis that holds parcelhook's own state: receiver dedupe keys, telemetry, health.

It is the broker's Redis unless the broker is RabbitMQ (then ``PARCELHOOK_REDIS_URL``).
Clients fail fast: the receiver must answer 503 in milliseconds, not after redis-py's
default retries (about 3.5 s per call against a refusing server).
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import Settings


def state_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.state_redis_url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 1)
    )
