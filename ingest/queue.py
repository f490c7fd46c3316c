"""Putting an accepted webhook durably on the broker, once.

Order of operations (why a duplicate never swallows an event whose first delivery failed):

1. ``EXISTS seen-key``            → already enqueued once: answer ``duplicate``.
2. ``process_event.send(...)``   → the event is on the broker (Redis with AOF).
3. ``SET seen-key``               → only now is the event known as seen.

If step 2 fails we answer 503 and nothing is marked, so Shippo's retry enqueues it.
If we die between 2 and 3, or two copies race through 1 together, the event is enqueued
twice — and the worker's unique ``deliveries (merchant_id, event_id)`` row makes the
second copy a no-op. The Redis key is a fast path; the database constraint is the truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, ParamSpec

import redis
from dramatiq import Actor

from ingest.errors import BrokerUnreachable, StateRedisUnreachable

P = ParamSpec("P")

SEEN_TTL_S = 7 * 24 * 3600  # well past Shippo's retry horizon; the DB constraint covers the rest


class EventQueue:
    def __init__(self, client: redis.Redis, send: Callable[..., Any], prefix: str = "parcelhook:seen") -> None:
        self.client = client
        self.send = send
        self.prefix = prefix

    def _key(self, merchant_id: int, event_id: str) -> str:
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:40]
        return f"{self.prefix}:{merchant_id}:{digest}"

    def submit(self, *, merchant_id: int, merchant_slug: str, event_id: str, received_at: str, body: str) -> bool:
        """Returns True when newly queued, False for a duplicate. Raises Unavailable (by reason)."""
        key = self._key(merchant_id, event_id)
        try:
            if self.client.exists(key):
                return False
        except (redis.RedisError, OSError) as exc:
            raise StateRedisUnreachable(f"the dedupe store is unreachable ({type(exc).__name__}); retry later") from exc
        try:
            self.send(merchant_slug, event_id, received_at, body)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnreachable(f"the queue is unreachable ({type(exc).__name__}); retry later") from exc
        try:
            self.client.set(key, "1", ex=SEEN_TTL_S)
        except (redis.RedisError, OSError) as exc:
            raise StateRedisUnreachable(f"the dedupe store is unreachable ({type(exc).__name__}); retry later") from exc
        return True


def hand_off(actor: Actor[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Give a verified callback (Twilio receipt, opt-out) to ``actor``; 503 if the broker is down.

    The caller names the actor itself (``hand_off(record_email_opt_out, slug, address)``), so the
    arguments are type-checked against the actor's signature."""
    try:
        actor.send(*args, **kwargs)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnreachable("the queue is unreachable; retry later") from exc
