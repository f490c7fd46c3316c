"""Putting an accepted webhook durably on the broker, once.

Order of operations (why a duplicate never swallows an event whose first delivery failed):

1. ``EXISTS seen-key``            → already enqueued once: answer ``duplicate``.
2. ``process_event.send(...)``   → the event is on the broker (Redis with AOF).
3. ``SET seen-key``               → only now is the event known as seen.

If step 2 fails we answer 503 and nothing is marked, so Shippo's retry enqueues it.
If we die between 2 and 3, or two copies race through 1 together, the event is enqueued
twice — and the worker's unique ``deliveries (merchant_id, event_id)`` row makes the
second copy a no-op. The Redis key is a fast path; the database constraint is the truth.

**One round trip** (:class:`AtomicSubmit`). When the broker is dramatiq's ``RedisBroker`` on
the same Redis as the dedupe keys (the default: ``PARCELHOOK_REDIS_URL`` unset), the three
steps run as one Lua script, ``SUBMIT_LUA``: Redis runs a script atomically, so the seen-key is
set in the same step as the enqueue and never without it (the rule above, without the window
between 2 and 3). The script writes the message exactly as dramatiq's own ``dispatch.lua``
``enqueue`` command does — the broker heartbeat, ``HSET <ns>:<queue>.msgs <id> <message>``,
``RPUSH <ns>:<queue> <id>`` — with the message dramatiq builds (``Actor.message`` and the
``redis_message_id`` ``RedisBroker.enqueue`` adds), and the broker's enqueue hooks run around it.
The caller may add writes of its own that happen only if the event was new (the receiver's
telemetry, so it costs no round trip of its own). A RabbitMQ broker, or dedupe keys on another
Redis, use the three steps above.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec
from uuid import uuid4

import redis
from dramatiq import Actor
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from ingest.errors import BrokerUnreachable, StateRedisUnreachable

P = ParamSpec("P")

SEEN_TTL_S = 7 * 24 * 3600  # well past Shippo's retry horizon; the DB constraint covers the rest

#: KEYS: seen-key, <ns>:__heartbeats__, <ns>:<queue>, <ns>:<queue>.msgs
#: ARGV: seen TTL, now (ms), broker id, redis message id, message, then (optional) the extra
#:       writes as ONE argument: a JSON array of commands, each ``[<command>, <argument>, …]``
#:       with every argument a string, commands from ``EXTRA_COMMANDS`` only (redis-py packs
#:       one argument instead of forty: that packing was 9 % of a webhook's time).
#: Returns 0 for a duplicate (nothing written), 1 when enqueued.
SUBMIT_LUA = """
if redis.call("exists", KEYS[1]) == 1 then
    return 0
end
redis.call("zadd", KEYS[2], ARGV[2], ARGV[3])
redis.call("hset", KEYS[4], ARGV[4], ARGV[5])
redis.call("rpush", KEYS[3], ARGV[4])
redis.call("set", KEYS[1], "1", "EX", ARGV[1])
if ARGV[6] then
    local allowed = {hincrby = true, hincrbyfloat = true, lpush = true, ltrim = true, expire = true}
    for _, command in ipairs(cjson.decode(ARGV[6])) do
        if allowed[string.lower(command[1])] then
            redis.call(unpack(command))
        end
    end
end
return 1
"""

EXTRA_COMMANDS = frozenset({"hincrby", "hincrbyfloat", "lpush", "ltrim", "expire"})


class Writes:
    """Extra writes for the submit script, recorded with redis-py's pipeline method names
    (``hincrby``, ``hincrbyfloat``, ``lpush``, ``ltrim``, ``expire``) so code that fills a
    pipeline can fill this instead. :meth:`packed` is the script's one argument for them."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self.commands.append(["hincrby", key, field, str(int(amount))])

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.commands.append(["hincrbyfloat", key, field, repr(float(amount))])

    def lpush(self, key: str, *values: str) -> None:
        self.commands.append(["lpush", key, *values])

    def ltrim(self, key: str, start: int, end: int) -> None:
        self.commands.append(["ltrim", key, str(int(start)), str(int(end))])

    def expire(self, key: str, seconds: int) -> None:
        self.commands.append(["expire", key, str(int(seconds))])

    def packed(self) -> tuple[str, ...]:
        """The script's extra arguments: none, or the commands as one JSON array."""
        if not self.commands:
            return ()
        return (json.dumps(self.commands, ensure_ascii=False, separators=(",", ":")),)


def same_redis(a: redis.Redis, b: redis.Redis) -> bool:
    """Whether two clients talk to the same Redis database (host/port or socket path, db)."""
    keys = ("host", "port", "path", "db")
    ka, kb = a.connection_pool.connection_kwargs, b.connection_pool.connection_kwargs
    return all(ka.get(k) == kb.get(k) for k in keys)


class AtomicSubmit:
    """Dedupe check, enqueue and seen-key in one script run, on ``actor``'s RedisBroker."""

    def __init__(self, client: redis.Redis, actor: Actor[..., Any]) -> None:
        self.client = client
        self.actor = actor
        self.script = client.register_script(SUBMIT_LUA)

    def usable(self) -> bool:
        broker = self.actor.broker
        return isinstance(broker, RedisBroker) and same_redis(broker.client, self.client)

    def __call__(self, key: str, args: tuple[Any, ...], extra: Sequence[Any]) -> bool:
        broker = self.actor.broker
        assert isinstance(broker, RedisBroker)  # noqa: S101 - usable() said so
        # what Actor.message(*args) and then RedisBroker.enqueue build (a unique id per enqueue, then
        # its hooks around the write), as one Message instead of a message and its copy
        message = self.actor.message_with_options(args=args, redis_message_id=str(uuid4()))
        broker.emit_before("enqueue", message, None)
        queue = f"{broker.namespace}:{message.queue_name}"
        new = self.script(
            keys=[key, f"{broker.namespace}:__heartbeats__", queue, f"{queue}.msgs"],
            args=[
                SEEN_TTL_S,
                current_millis(),
                broker.broker_id,
                message.options["redis_message_id"],
                message.encode(),
                *extra,
            ],
        )
        if new:
            broker.emit_after("enqueue", message, None)
        return bool(new)


class EventQueue:
    def __init__(
        self,
        client: redis.Redis,
        send: Callable[..., Any],
        prefix: str = "parcelhook:seen",
        atomic: AtomicSubmit | None = None,
    ) -> None:
        self.client = client
        self.send = send
        self.prefix = prefix
        self.atomic = atomic

    def _key(self, merchant_id: int, event_id: str) -> str:
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:40]
        return f"{self.prefix}:{merchant_id}:{digest}"

    @property
    def one_round_trip(self) -> bool:
        """Whether :meth:`submit` is one script run (and applies ``if_new`` writes)."""
        return self.atomic is not None and self.atomic.usable()

    def submit(
        self,
        *,
        merchant_id: int,
        merchant_slug: str,
        event_id: str,
        received_at: str,
        body: str,
        if_new: Writes | None = None,
    ) -> bool:
        """Returns True when newly queued, False for a duplicate. Raises Unavailable (by reason).

        ``if_new``: writes applied in the same step as the enqueue, and only then (one round trip
        only; callers check :attr:`one_round_trip` before they pass any)."""
        key = self._key(merchant_id, event_id)
        args = (merchant_slug, event_id, received_at, body)
        if self.atomic is not None and self.atomic.usable():
            try:
                return self.atomic(key, args, if_new.packed() if if_new else ())
            except (redis.RedisError, OSError) as exc:
                # the dedupe store and the broker are one Redis here: its reason is the first step's
                raise StateRedisUnreachable(
                    f"the dedupe store is unreachable ({type(exc).__name__}); retry later"
                ) from exc
        try:
            if self.client.exists(key):
                return False
        except (redis.RedisError, OSError) as exc:
            raise StateRedisUnreachable(
                f"the dedupe store is unreachable ({type(exc).__name__}); retry later"
            ) from exc
        try:
            self.send(*args)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnreachable(f"the queue is unreachable ({type(exc).__name__}); retry later") from exc
        try:
            self.client.set(key, "1", ex=SEEN_TTL_S)
        except (redis.RedisError, OSError) as exc:
            raise StateRedisUnreachable(
                f"the dedupe store is unreachable ({type(exc).__name__}); retry later"
            ) from exc
        return True


def hand_off(actor: Actor[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Give a verified callback (Twilio receipt, opt-out) to ``actor``; 503 if the broker is down.

    The caller names the actor itself (``hand_off(record_email_opt_out, slug, address)``), so the
    arguments are type-checked against the actor's signature."""
    try:
        actor.send(*args, **kwargs)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnreachable("the queue is unreachable; retry later") from exc
