"""The `pipeline` floor: ``dramatiq bench.noop_worker --processes 1 --threads 4``.

A RedisBroker on the same Redis and namespace as parcelhook's (``BENCH_NOOP_BROKER_URL``),
dramatiq's default middleware, one actor that does nothing. Its drain rate is what dramatiq
itself costs per message on this machine; everything parcelhook adds is above it.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.common import NAMESPACE, NOOP_QUEUE


def make_broker(url: str) -> RedisBroker:
    return RedisBroker(url=url, namespace=NAMESPACE)


broker = make_broker(os.environ.get("BENCH_NOOP_BROKER_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=NOOP_QUEUE, max_retries=0)
def noop() -> None:
    """Nothing: the message is fetched, decoded, run and acknowledged."""
