"""A Redis broker's queues as they stand, read-only: what the ops views (``admin/queues.py``)
and the health alerts (``workers/health.py``) both read."""

from __future__ import annotations

from typing import Any

import dramatiq

# KEYS: q, q.msgs, q.DQ.msgs, q.XQ -> {ready, delayed, dead, head message bytes or false},
# the counts of one queue and its head message in one consistent step.
QUEUE_STATE = """
local ready = redis.call("llen", KEYS[1])
local delayed = redis.call("hlen", KEYS[3])
local dead = redis.call("zcard", KEYS[4])
local head = false
local head_id = redis.call("lindex", KEYS[1], 0)
if head_id then
    head = redis.call("hget", KEYS[2], head_id)
end
return {ready, delayed, dead, head}
"""


def queue_keys(namespace: str, name: str) -> list[str]:
    """The ``KEYS`` of :data:`QUEUE_STATE` for queue ``name``."""
    q = f"{namespace}:{name}"
    return [q, q + ".msgs", q + ".DQ.msgs", q + ".XQ"]


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis SCAN ``MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def decode_message(data: bytes | None) -> dict[str, Any] | None:
    """Decode an encoded dramatiq message with the configured encoder; None when unreadable."""
    if data is None:
        return None
    try:
        decoded = dramatiq.get_encoder().decode(data)
    except Exception:
        return None
    return decoded if isinstance(decoded, dict) else None


def head_age_s(blob: bytes | None, now_ms: int) -> float | None:
    """How long ago the message ``blob`` was enqueued; None for no message or no known age."""
    message = decode_message(blob) if blob else None
    ts = message.get("message_timestamp") if message else None
    if not isinstance(ts, int | float):
        return None
    return max(0.0, (now_ms - ts) / 1000)
