"""Merchant ``order_ref_pattern``s, run with RE2 (google-re2): linear time in the metadata length.

A merchant's pattern is untrusted input run against untrusted input (Shippo ``metadata``). With a
backtracking engine (Python's ``re``) a pattern like ``(a+)+$`` takes exponential time, inside C
where the actor time limit cannot interrupt it. RE2 guarantees time linear in the input and
refuses what it cannot run that way (backreferences, lookarounds, possessive/atomic groups):
such a pattern is an invalid ``order_ref_pattern``.

RE2 differs from ``re`` in small ways a pattern author may notice: ``\\w``, ``\\d`` and ``\\b``
are ASCII-only, and ``$`` matches only at the very end (never before a final newline).

Compiled patterns are cached per pattern string (every event of a merchant uses the same one).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import re2

from domain.order import RefMatcher

log = logging.getLogger("parcelhook.order_refs")

MAX_PATTERN_CHARS = 500


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the problem is reported to the caller, not on stderr
    return options


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> tuple[RefMatcher | None, str | None]:
    if len(pattern) > MAX_PATTERN_CHARS:
        return None, f"must be at most {MAX_PATTERN_CHARS} characters"
    try:
        return re2.compile(pattern, _options()), None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return None, (
            f"cannot be run in linear time ({reason}); backreferences and lookarounds are not supported"
        )


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot run ``pattern`` (None when it can)."""
    return _compile(pattern)[1]


def compile_order_ref_pattern(pattern: str) -> RefMatcher:
    """The cached RE2 matcher for ``pattern``; ValueError when RE2 cannot run it."""
    matcher, problem = _compile(pattern)
    if matcher is None:
        raise ValueError(f"invalid order_ref_pattern: {problem}")
    return matcher


def matcher_for(pattern: str | None, merchant_slug: str = "") -> RefMatcher | None:
    """The matcher a merchant's events use. None for no pattern (the whole trimmed metadata is
    the ref). A pattern saved before RE2 was required that RE2 cannot run raises ValueError
    (the caller records no order ref) and is logged, so ops can ask the merchant to fix it."""
    if not pattern:
        return None
    try:
        return compile_order_ref_pattern(pattern)
    except ValueError:
        _warn_once(pattern, merchant_slug)
        raise


@lru_cache(maxsize=256)
def _warn_once(pattern: str, merchant_slug: str) -> None:
    log.warning(
        "merchant %s has an order_ref_pattern RE2 cannot run (%s); its events get no order ref",
        merchant_slug or "?",
        pattern_problem(pattern),
    )
