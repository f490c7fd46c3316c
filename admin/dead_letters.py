"""Dead letters: list, requeue and purge dramatiq's ``<ns>:<queue>.XQ``.

A message is dead-lettered when its actor failed more than ``max_retries``
times (or raised one of its ``throws``). dramatiq keeps it 7 days in
``<ns>:<q>.XQ`` (zset: id -> dead-lettered at, ms) + ``<ns>:<q>.XQ.msgs``
(hash: id -> encoded message). The id is the message's ``redis_message_id``.

Requeue moves the message back to ``<ns>:<q>.msgs`` + ``RPUSH <ns>:<q>`` with
the SAME ``message_id`` (the DB's idempotency keys depend on the message's
content, not on the delivery) and the same redis id, after resetting the
retry state: ``retries`` = 0, ``traceback``/``eta``/``requeue_timestamp``
dropped, ``queue_name`` back to the canonical queue, and ``message_timestamp``
set to now (so an actor ``max_age`` cannot silently drop the requeued message
and ``oldest_age_s`` measures queue wait, not the dead-letter stay);
``dlq_requeues`` counts how often that happened.

Atomicity: the new encoding is computed in Python (the configured dramatiq
encoder, not Lua's cjson, which would turn ``[]`` into ``{}``) and a Lua script
moves each message only if its XQ entry is still exactly the bytes that were
read (compare-and-move). So a message is moved at most once even with two
operators clicking at once, never lost and never duplicated; ids no longer
(or never) in the XQ are ignored and not counted. ``all`` works on the dead
letters present when the request started, in batches of ``BATCH`` ids per
script call; purge of ``all`` is a single script call.

Final error and attempt count: dramatiq dead-letters the bytes as they were
fetched, so the stored message lacks the last failure. The workers' broker
should carry :class:`workers.middleware.DeadLetterRecorder`, which records it;
without it ``attempts`` is derived from the stored ``retries`` (+1) and
``last_error`` is the previous attempt's error (None after a single attempt).

RabbitMQ (:class:`RabbitDeadLetters`): dramatiq dead-letters to the durable queue ``<q>.XQ``
(RabbitMQ's dead-letter routing, messages kept 7 days). A queue cannot be read without
taking its messages, so every operation takes the messages present when it started with
``basic.get`` on one channel, *without* acking them, and then acks what it removed (requeue:
only after the reset message was published to ``<q>`` and confirmed by RabbitMQ) and returns
the rest with one ``basic.nack(requeue=True)``, which RabbitMQ puts back in their places.
A message taken by one operation is invisible to another until returned, so two operators
cannot both move it. The id is dramatiq's ``message_id``; ``dead_lettered_at`` is RabbitMQ's
``x-death`` time (seconds). If the process dies between the publish and the ack, the message
is on both queues (the database's idempotency keys make the second run a no-op).
A list reads at most ``RABBIT_SCAN_CAP`` dead letters per queue.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import dramatiq
import redis

from workers.broker import QUEUES
from workers.queue_state import decode_message
from workers.redis_replies import members, raw, scored_members
from workers.telemetry import dead_letter_key

_T = TypeVar("_T")

BATCH = 200
#: At most this many dead letters are read per queue by a RabbitMQ list.
RABBIT_SCAN_CAP = 10_000

# The failure-detail keys (workers.middleware.DeadLetterRecorder) are named from
# ARGV[1] (their prefix) inside the scripts: fine for a single Redis, which is
# what the broker uses (dramatiq's own scripts build keys the same way).

# KEYS: xq, xq.msgs, q, q.msgs ; ARGV: detail prefix, id1, old1, new1, id2, old2, new2, ...
_REQUEUE = """
local moved = 0
for i = 2, #ARGV, 3 do
    local id, old, new = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if redis.call("zscore", KEYS[1], id) and redis.call("hget", KEYS[2], id) == old then
        redis.call("zrem", KEYS[1], id)
        redis.call("hdel", KEYS[2], id)
        redis.call("hset", KEYS[4], id, new)
        redis.call("rpush", KEYS[3], id)
        redis.call("del", ARGV[1] .. id)
        moved = moved + 1
    end
end
return moved
"""

# KEYS: xq, xq.msgs ; ARGV: detail prefix, ids... (no ids = all)
_PURGE = """
if #ARGV == 1 then
    local ids = redis.call("zrange", KEYS[1], 0, -1)
    for i = 1, #ids do
        redis.call("del", ARGV[1] .. ids[i])
    end
    redis.call("del", KEYS[1], KEYS[2])
    return #ids
end
local removed = 0
for i = 2, #ARGV do
    if redis.call("zrem", KEYS[1], ARGV[i]) > 0 then
        removed = removed + 1
    end
    redis.call("hdel", KEYS[2], ARGV[i])
    redis.call("del", ARGV[1] .. ARGV[i])
end
return removed
"""


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the broker's redis_message_id (what requeue/purge take)
    queue: str
    actor: str | None
    merchant: str | None  # process_event only
    event_id: str | None  # process_event only
    notification_id: int | None  # send_notification only
    attempts: int  # how many times it was tried (all failed)
    last_error: str | None  # the final error, e.g. "RuntimeError: boom"
    dead_lettered_at: str | None  # ISO 8601 UTC
    message_id: str | None  # dramatiq's message id (stable across retries and requeues)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class UnknownQueue(ValueError):
    pass


def _last_error(tb: object) -> str | None:
    if not isinstance(tb, str):
        return None
    lines = [line for line in tb.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else None


def _describe(
    queue: str,
    redis_id: str,
    score: float | None,
    message: dict[str, Any] | None,
    detail: dict[str, Any] | None = None,
) -> DeadLetter:
    """``detail`` is what DeadLetterRecorder wrote at the final failure. Without it
    (recorder not installed, or expired) the stored message only knows the
    attempts before the last one and the previous attempt's traceback."""
    message = message or {}
    detail = detail or {}
    options = message.get("options") or {}
    args = message.get("args") or []
    actor = message.get("actor_name")
    merchant = event_id = None
    notification_id = None
    if actor == "process_event" and len(args) >= 2:
        merchant, event_id = str(args[0]), str(args[1])
    elif actor == "send_notification" and args:
        try:
            notification_id = int(args[0])
        except (TypeError, ValueError):
            notification_id = None
    at = None if score is None else datetime.fromtimestamp(score / 1000, UTC).isoformat()
    attempts = detail.get("attempts")
    if not isinstance(attempts, int):
        attempts = int(options.get("retries", 0) or 0) + 1
    last_error = detail.get("error") if detail.get("error") else _last_error(options.get("traceback"))
    return DeadLetter(
        id=redis_id,
        queue=queue,
        actor=actor,
        merchant=merchant,
        event_id=event_id,
        notification_id=notification_id,
        attempts=attempts,
        last_error=last_error,
        dead_lettered_at=at,
        message_id=message.get("message_id"),
    )


def reset_for_requeue(message: dict[str, Any], queue: str, now_ms: int) -> dict[str, Any]:
    """The message as it goes back on ``queue``: same ids, fresh retry state."""
    options = {
        k: v
        for k, v in (message.get("options") or {}).items()
        if k not in ("traceback", "eta", "requeue_timestamp")
    }
    options["retries"] = 0
    options["dlq_requeues"] = int(options.get("dlq_requeues", 0) or 0) + 1
    return {**message, "queue_name": queue, "options": options, "message_timestamp": now_ms}


def _json(value: bytes | str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


class _DeadLetterStore:
    """What both brokers' dead letters share: the queues served (any other is
    :class:`UnknownQueue`) and the state Redis ``client`` where
    :class:`workers.middleware.DeadLetterRecorder` keeps each final failure under ``telemetry_prefix``."""

    def __init__(self, client: redis.Redis, queues: Iterable[str], telemetry_prefix: str) -> None:
        self.client = client
        self.queues = tuple(queues)
        self.telemetry_prefix = telemetry_prefix

    def _known(self, queue: str) -> str:
        if queue not in self.queues:
            raise UnknownQueue(queue)
        return queue

    def _detail_prefix(self, queue: str) -> str:
        return dead_letter_key(self.telemetry_prefix, queue, "")


class DeadLetters(_DeadLetterStore):
    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "parcelhook",
        queues: Iterable[str] = QUEUES,
        *,
        telemetry_prefix: str = "parcelhook:telemetry",
    ) -> None:
        super().__init__(client, queues, telemetry_prefix)
        self.namespace = namespace
        self._requeue = client.register_script(_REQUEUE)
        self._purge = client.register_script(_PURGE)

    def _keys(self, queue: str) -> tuple[str, str, str, str]:
        q = f"{self.namespace}:{self._known(queue)}"
        return q + ".XQ", q + ".XQ.msgs", q, q + ".msgs"

    def count(self, queue: str) -> int:
        return int(self.client.zcard(self._keys(queue)[0]))

    def list(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Most recently dead-lettered first."""
        xq, xmsgs, _, _ = self._keys(queue)
        if limit <= 0:
            return []
        rows = scored_members(self.client.zrevrange(xq, 0, limit - 1, withscores=True))
        if not rows:
            return []
        ids = [i for i, _ in rows]
        blobs = self.client.hmget(xmsgs, ids)
        details = self.client.mget([self._detail_prefix(queue) + i for i in ids])
        return [
            _describe(queue, i, score, decode_message(raw(blob)), _json(detail))
            for (i, score), blob, detail in zip(rows, blobs, details, strict=True)
        ]

    def _snapshot_ids(self, xq: str) -> builtins.list[str]:  # `list` here is the method above
        return members(self.client.zrange(xq, 0, -1))

    def requeue(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Move dead letters back to ``queue`` (``ids=None``: all). Returns how many moved."""
        xq, xmsgs, q, qmsgs = self._keys(queue)
        wanted = self._snapshot_ids(xq) if ids is None else list(dict.fromkeys(str(i) for i in ids))
        encoder = dramatiq.get_encoder()
        moved = 0
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            blobs = self.client.hmget(xmsgs, chunk)
            argv: list[bytes | str] = [self._detail_prefix(queue)]
            now_ms = int(time.time() * 1000)
            for redis_id, blob in zip(chunk, blobs, strict=True):
                message = decode_message(raw(blob))
                if blob is None or message is None:
                    continue  # unknown id (or undecodable: leave it for an operator to purge)
                argv += [redis_id, blob, encoder.encode(reset_for_requeue(message, queue, now_ms))]
            if len(argv) > 1:
                moved += int(self._requeue(keys=[xq, xmsgs, q, qmsgs], args=argv))
        return moved

    def purge(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids=None``: all, atomically). Returns how many were deleted."""
        xq, xmsgs, _, _ = self._keys(queue)
        if ids is None:
            return int(self._purge(keys=[xq, xmsgs], args=[self._detail_prefix(queue)]))
        wanted = list(dict.fromkeys(str(i) for i in ids))
        removed = 0
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            if chunk:
                removed += int(self._purge(keys=[xq, xmsgs], args=[self._detail_prefix(queue), *chunk]))
        return removed


class RabbitDeadLetters(_DeadLetterStore):
    """:class:`DeadLetters` on a RabbitMQ broker at ``amqp_url`` (see the module doc)."""

    def __init__(
        self,
        client: redis.Redis,
        amqp_url: str,
        queues: Iterable[str] = QUEUES,
        *,
        telemetry_prefix: str = "parcelhook:telemetry",
    ) -> None:
        self.amqp_url = amqp_url
        super().__init__(client, queues, telemetry_prefix)

    def _xq(self, queue: str) -> str:
        from dramatiq.common import xq_name

        return xq_name(self._known(queue))

    def _channel(self) -> Any:
        import pika  # type: ignore[import-untyped]  # no stubs on PyPI

        from workers.rabbitmq_state import RabbitUnreachable

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError as exc:
            raise RabbitUnreachable(f"RabbitMQ unreachable: {type(exc).__name__}") from None
        return connection.channel()

    def _depth(self, channel: Any, xq: str) -> int:
        import pika.exceptions  # type: ignore[import-untyped]

        try:
            return int(channel.queue_declare(queue=xq, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0  # never declared: nothing was ever dead-lettered
            raise

    def _take(self, channel: Any, xq: str, cap: int) -> builtins.list[tuple[int, Any, bytes]]:
        """Up to ``cap`` messages of ``xq`` (delivery tag, properties, body), unacked."""
        taken: builtins.list[tuple[int, Any, bytes]] = []
        while len(taken) < cap:
            method, properties, body = channel.basic_get(xq, auto_ack=False)
            if method is None:
                break
            taken.append((int(method.delivery_tag), properties, bytes(body)))
        return taken

    def _run(self, queue: str, work: Callable[[Any, str], _T]) -> _T:
        """``work(channel, xq)``; whatever it took and did not ack goes back to the queue."""
        import pika.exceptions

        from workers.rabbitmq_state import RabbitUnreachable

        xq = self._xq(queue)
        channel = self._channel()
        connection = channel.connection
        try:
            result = work(channel, xq)
            if channel.is_open:
                channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            return result
        except pika.exceptions.AMQPError as exc:
            raise RabbitUnreachable(f"RabbitMQ failed: {type(exc).__name__}") from None
        finally:
            if connection.is_open:
                connection.close()  # also returns anything still unacked

    @staticmethod
    def _dead_lettered_ms(properties: Any) -> float | None:
        deaths = (getattr(properties, "headers", None) or {}).get("x-death") or []
        at = deaths[0].get("time") if deaths and isinstance(deaths[0], dict) else None
        if isinstance(at, datetime):
            return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000
        return float(at) * 1000 if isinstance(at, int | float) else None

    def count(self, queue: str) -> int:
        return self._run(queue, self._depth)

    def list(self, queue: str, limit: int = 100) -> builtins.list[DeadLetter]:
        """Most recently dead-lettered first (of the first ``RABBIT_SCAN_CAP``)."""
        if limit <= 0:
            self._xq(queue)
            return []

        def read(channel: Any, xq: str) -> builtins.list[tuple[Any, dict[str, Any] | None]]:
            # the depth first, as requeue and purge do: a queue never declared has none (404)
            cap = min(RABBIT_SCAN_CAP, self._depth(channel, xq))
            return [(p, decode_message(body)) for _, p, body in self._take(channel, xq, cap)]

        rows = self._run(queue, read)[::-1][:limit]
        ids = [str((m or {}).get("message_id") or "") for _, m in rows]
        details = self.client.mget([self._detail_prefix(queue) + i for i in ids]) if ids else []
        return [
            _describe(queue, i, self._dead_lettered_ms(p), m, _json(detail))
            for (p, m), i, detail in zip(rows, ids, details, strict=True)
        ]

    def requeue(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Move dead letters back to ``queue`` (``ids=None``: all present now). Returns how many."""
        import pika

        encoder = dramatiq.get_encoder()

        def publish(channel: Any, properties: Any, message: dict[str, Any]) -> None:
            fresh = reset_for_requeue(message, queue, int(time.time() * 1000))
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=encoder.encode(fresh),
                properties=pika.BasicProperties(
                    delivery_mode=2, priority=getattr(properties, "priority", None)
                ),
                mandatory=True,
            )

        return self._settle(queue, ids, publish)

    def purge(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids=None``: all present now). Returns how many were deleted."""
        return self._settle(queue, ids)

    def _settle(
        self,
        queue: str,
        ids: Sequence[str] | None,
        publish: Callable[[Any, Any, dict[str, Any]], None] | None = None,
    ) -> int:
        """Ack (remove) the dead letters asked for, one copy per id (``ids=None``: every one present
        now); with ``publish`` (requeue) each is first published to ``queue`` and confirmed, and
        one that cannot be decoded stays. Their failure details go too. Returns how many."""
        wanted = None if ids is None else set(str(i) for i in ids)

        def settle(channel: Any, xq: str) -> builtins.list[str]:
            if publish is not None:
                channel.confirm_delivery()
            settled: builtins.list[str] = []
            for tag, properties, body in self._take(channel, xq, self._depth(channel, xq)):
                message = decode_message(body)
                message_id = str((message or {}).get("message_id") or "")
                if wanted is not None and (message_id not in wanted or message_id in settled):
                    continue
                if publish is not None:
                    if message is None:
                        continue
                    publish(channel, properties, message)
                channel.basic_ack(delivery_tag=tag)
                settled.append(message_id)
            return settled

        settled = self._run(queue, settle)
        self._forget(queue, settled)
        return len(settled)

    def _forget(self, queue: str, message_ids: builtins.list[str]) -> None:
        keys = [self._detail_prefix(queue) + i for i in message_ids if i]
        for start in range(0, len(keys), BATCH):
            self.client.delete(*keys[start : start + BATCH])


def dead_letters_for(services: Any) -> DeadLetters | RabbitDeadLetters:
    """The dead letters of the app's broker (``services``: settings, redis, namespace, queues)."""
    settings = services.settings
    if settings is not None and settings.broker_url.startswith("amqp"):
        return RabbitDeadLetters(services.redis, settings.broker_url, services.queues)
    return DeadLetters(services.redis, services.namespace, services.queues)
