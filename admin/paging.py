"""The query parameters every admin list route shares: ``limit`` and, on a paged list, ``cursor``.

One parser, so every list answers the same way: a missing or empty ``limit`` is the route's
default; anything but plain digits within the route's bounds is a 422 naming ``limit`` (``int()``
alone would also take ``" 5"``, ``"+5"``, ``"5_0"`` and non-ASCII digits); a ``cursor`` is only
what the route itself returned (URL-safe base64 that its decoder reads back), else a 422 naming
``cursor``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from admin.validation import Invalid

LIMIT = re.compile(r"[0-9]{1,9}")  # whole string (fullmatch); bounds checked after
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")  # URL-safe base64 without padding, as routes encode it

C = TypeVar("C")


@dataclass(frozen=True)
class Page(Generic[C]):
    limit: int
    cursor: C | None = None


def page_args(
    args: Mapping[str, str],
    *,
    default: int,
    maximum: int,
    decode_cursor: Callable[[str], C] | None = None,
) -> Page[C]:
    """``limit`` (1..``maximum``, ``default`` when absent) and, when the route pages, the decoded
    ``cursor``. Every problem in one :class:`Invalid`. ``decode_cursor`` raises ValueError,
    KeyError or TypeError for anything it did not encode."""
    errors: dict[str, str] = {}
    limit = default
    raw = args.get("limit")
    if raw:
        if LIMIT.fullmatch(raw) and 1 <= int(raw) <= maximum:
            limit = int(raw)
        else:
            errors["limit"] = f"must be an integer between 1 and {maximum}"
    cursor: C | None = None
    raw_cursor = args.get("cursor")
    if decode_cursor is not None and raw_cursor:
        try:
            if not CURSOR.fullmatch(raw_cursor):
                raise ValueError("not URL-safe base64")
            cursor = decode_cursor(raw_cursor)
        except (ValueError, KeyError, TypeError):
            errors["cursor"] = "is not a cursor this API returned"
    if errors:
        raise Invalid(errors)
    return Page(limit, cursor)
