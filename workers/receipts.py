"""Provider receipts: what a provider answered, kept in Redis until the database has it.

Between "the provider accepted the message" and "``sent`` + provider id is committed" lies a
database write that can fail (an outage, a failover). The provider's answer is a *known*
outcome; losing it would turn a delivered message into ``outcome_unknown`` and a false
"could not be sent" alert. So the answer is written here first — in the state Redis, keyed by
the notification's idempotency key — and a later attempt that finds the row still
``sending`` records it from here instead of guessing (workers/sending.py).

The TTL outlives every retry of ``send_notification`` (6 retries, backoff capped at 10 min:
well under two hours) with a wide margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

#: Longer than send_notification's whole retry horizon (≈ 1 h at most), by a wide margin.
RECEIPT_TTL = timedelta(days=2)


class ReceiptsUnavailable(Exception):
    """The state Redis cannot be reached: the receipt could not be kept or read."""


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    accepted_at: datetime


class Receipts:
    def __init__(self, client: redis.Redis, namespace: str, ttl: timedelta = RECEIPT_TTL) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl = ttl

    def key(self, idempotency_key: str) -> str:
        return f"{self.namespace}:receipt:{idempotency_key}"

    def keep(self, idempotency_key: str, receipt: Receipt) -> None:
        value = json.dumps(
            {"provider_id": receipt.provider_id, "accepted_at": receipt.accepted_at.isoformat()}
        )
        try:
            self.client.set(self.key(idempotency_key), value, ex=self.ttl)
        except redis.RedisError as exc:
            raise ReceiptsUnavailable(type(exc).__name__) from exc

    def find(self, idempotency_key: str) -> Receipt | None:
        try:
            raw = self.client.get(self.key(idempotency_key))
        except redis.RedisError as exc:
            raise ReceiptsUnavailable(type(exc).__name__) from exc
        if raw is None:
            return None
        data = json.loads(raw)
        return Receipt(
            provider_id=str(data["provider_id"]), accepted_at=datetime.fromisoformat(data["accepted_at"])
        )

    def forget(self, idempotency_key: str) -> None:
        try:
            self.client.delete(self.key(idempotency_key))
        except redis.RedisError as exc:
            raise ReceiptsUnavailable(type(exc).__name__) from exc
