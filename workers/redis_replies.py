"""Typed views of redis-py replies.

redis-py declares a command's reply type from the command alone, not from its arguments: a
sorted-set range is ``list[bytes | str] | list[tuple[bytes | str, Any]] | …`` whether or not
``withscores=True`` was passed, and every value is ``bytes | str`` whatever
``decode_responses`` is. These functions narrow the replies parcelhook's clients actually get.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.typing import ZSetRangeResponse  # redis-py >= 8's reply types


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def members(reply: ZSetRangeResponse) -> list[str]:
    """A sorted-set range reply without scores as its members, in reply order."""
    out: list[str] = []
    for item in reply:
        if not isinstance(item, bytes | str):
            raise TypeError("a sorted-set range reply with scores (withscores=True was passed)")
        out.append(text(item))
    return out


def scored_members(reply: ZSetRangeResponse) -> list[tuple[str, float]]:
    """A ``withscores=True`` range reply as ``(member, score)`` pairs, in reply order."""
    pairs: list[tuple[str, float]] = []
    for item in reply:
        if isinstance(item, bytes | str):
            raise TypeError("a sorted-set range reply without scores (withscores=True is needed)")
        member, score = item
        pairs.append((text(member), float(score)))
    return pairs


def raw(value: bytes | str | None) -> bytes | None:
    """A value from a client without ``decode_responses`` (so always bytes or None)."""
    return value.encode() if isinstance(value, str) else value
