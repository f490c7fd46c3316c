"""The receiver's check before its 200 (``check_event``) refuses exactly what the worker's full parse
(``parse_event``) refuses, with the same message, on hostile bodies: it only skips building what
cannot refuse (free text, which is cleaned; history entries, which are skipped when malformed).

And the depth check (``check_depth``, recursive and bounded now) refuses exactly what the
iterative walk it replaced refused."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.fields import MAX_DEPTH, PayloadError, check_depth, strict_json
from domain.payload import check_event, is_acted_on, parse_event, parse_webhook
from tests.fixtures.shippo import body as sample
from tests.support.hostile_bodies import (
    LABEL_PATHS,
    SAMPLES,
    TRACK_PATHS,
    any_json_body,
    encode,
    mutated_webhooks,
    put,
    values,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every field either function reads, the history's and the rate's too (hostile_bodies covers fewer)
HISTORY_PATHS: list[tuple[Any, ...]] = [
    ("data", "tracking_history"),
    ("data", "tracking_history", 0),
    *(
        ("data", "tracking_history", 0, *rest)
        for rest in [
            ("status",),
            ("object_created",),
            ("substatus",),
            ("substatus", "code"),
            ("substatus", "action_required"),
            ("location",),
        ]
    ),
    ("data", "tracking_status"),
    ("data", "tracking_status", "substatus", "action_required"),
]
RATE_PATHS: list[tuple[Any, ...]] = [("data", "rate", "provider"), ("data", "rate", "object_id"), ("data",)]
PATHS = {
    name: [*paths, *(HISTORY_PATHS if paths is TRACK_PATHS else RATE_PATHS)]
    for name, paths in SAMPLES.items()
}
assert set(LABEL_PATHS) <= {p for paths in PATHS.values() for p in paths}


@st.composite
def widely_mutated_webhooks(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(PATHS)))
    body = copy.deepcopy(sample(name))
    for path in draw(st.lists(st.sampled_from(PATHS[name]), min_size=1, max_size=5)):
        put(body, path, draw(values))
    return encode(body)


def outcome(run: Any) -> str | None:
    """None when ``run`` passes; the PayloadError's message when it refuses."""
    try:
        run()
    except PayloadError as exc:
        return str(exc)
    return None


def assert_check_agrees_with_parse(raw: bytes) -> None:
    try:
        webhook = parse_webhook(raw)
    except PayloadError:
        return  # the envelope is refused before either runs
    parsed = outcome(lambda: parse_event(webhook))
    assert outcome(lambda: check_event(webhook)) == parsed
    if not is_acted_on(webhook):
        assert parsed is None


@FAST
@given(raw=st.one_of(widely_mutated_webhooks(), mutated_webhooks()))
def test_the_receiver_check_refuses_what_the_full_parse_refuses(raw: bytes) -> None:
    assert_check_agrees_with_parse(raw)


@FAST
@given(raw=any_json_body)
def test_the_check_and_the_parse_agree_on_arbitrary_json(raw: bytes) -> None:
    assert_check_agrees_with_parse(raw)


def test_a_bad_latest_scan_is_refused_by_both_with_the_same_message() -> None:
    body = sample("track_updated_transit.json")
    body["data"]["tracking_status"]["status_date"] = "0001-01-01T00:00:00+05:00"
    webhook = parse_webhook(encode(body))
    assert outcome(lambda: check_event(webhook)) == outcome(lambda: parse_event(webhook)) is not None


def test_a_bad_history_entry_is_refused_by_neither() -> None:
    body = sample("track_updated_transit.json")
    body["data"]["tracking_history"][0]["status"] = "\x00" * 3
    webhook = parse_webhook(encode(body))
    assert outcome(lambda: check_event(webhook)) is None
    assert outcome(lambda: parse_event(webhook)) is None


# --------------------------------------------------------------------------- depth


def iterative_depth_check(value: Any, limit: int) -> None:
    """The walk ``check_depth`` used before (a stack of (item, depth)), kept as the reference."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise PayloadError(f"body is nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))


nested = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=30,
)


@FAST
@given(value=nested, limit=st.integers(min_value=0, max_value=8))
def test_the_depth_check_refuses_what_the_iterative_walk_refused(value: Any, limit: int) -> None:
    assert outcome(lambda: check_depth(value, limit)) == outcome(lambda: iterative_depth_check(value, limit))


def test_the_depth_limit_is_exact_and_deep_bodies_cannot_exhaust_the_stack() -> None:
    def nest(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    check_depth(nest(64))
    assert outcome(lambda: check_depth(nest(65))) == "body is nested deeper than 64 levels"
    assert outcome(lambda: check_depth(nest(100_000))) == "body is nested deeper than 64 levels"


@FAST
@given(value=nested, pad=st.integers(min_value=0, max_value=80), levels=st.sampled_from([0, 30, 60]))
def test_json_text_is_refused_for_depth_exactly_when_its_value_nests_too_deep(
    value: Any, pad: int, levels: int
) -> None:
    """``strict_json`` walks the value only when the text has more brackets than the limit allows
    levels; brackets inside strings (``pad`` of them) only make it walk, never change the answer."""
    deep: Any = {"pad": "[{" * pad, "value": value}
    for _ in range(levels):
        deep = [deep]
    text = json.dumps(deep)
    assert outcome(lambda: strict_json(text)) == outcome(lambda: strict_json(text.encode()))
    assert outcome(lambda: strict_json(text)) == outcome(lambda: iterative_depth_check(deep, MAX_DEPTH))


def test_a_body_of_many_shallow_brackets_is_accepted_and_one_too_deep_is_not() -> None:
    assert strict_json(json.dumps([[]] * 200)) == [[]] * 200
    assert outcome(lambda: strict_json("[" * 65 + "]" * 65)) == "body is nested deeper than 64 levels"
    assert strict_json("[" * 64 + "]" * 64) is not None
