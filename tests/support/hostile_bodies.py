"""Hostile Shippo bodies for property tests: realistic samples mutated with values a sender (or an
attacker holding a webhook URL) can put on the wire."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from tests.fixtures.shippo import body as sample

ORDER_REF = "Order 1001"

HOSTILE = [
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",
    "\u200f",
    "😀",
    "\n",
    "\r",
    "\t",
    "\x1b",
    "\x7f",
    "\x85",
    "é",
    "𝕏",
]

chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE))
short_text = st.text(chars, min_size=0, max_size=12)


@st.composite
def long_text(draw: st.DrawFn) -> str:
    """A string up to 10× the largest column (200 → 2,000 characters), built from a hostile seed."""
    seed = draw(st.text(chars, min_size=1, max_size=6))
    length = draw(st.sampled_from([1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 199, 200, 201, 640, 1280, 2000]))
    return (seed * (length // len(seed) + 1))[:length]


@st.composite
def moment(draw: st.DrawFn) -> str:
    when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)))
    offset = draw(st.sampled_from([None, 0, 5, -5, 14, -12]))
    if offset is None:
        return when.isoformat()
    return when.replace(tzinfo=timezone(timedelta(hours=offset))).isoformat()


EXTREME_DATES = [
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59",
    "0001-01-01",
]

numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just("@@BIGINT@@"),  # swapped for a bare 5,000-digit number after encoding
)
scalars = st.one_of(
    st.none(), st.booleans(), numbers, short_text, long_text(), moment(), st.sampled_from(EXTREME_DATES)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)),
    max_leaves=8,
)
values = st.one_of(scalars, json_values, st.just("@@DEEP@@"))

TRACK_PATHS: list[tuple[Any, ...]] = [
    ("event",),
    ("test",),
    ("metadata",),
    ("surprise",),
    ("data", "carrier"),
    ("data", "tracking_number"),
    ("data", "transaction"),
    ("data", "metadata"),
    ("data", "eta"),
    ("data", "messages"),
    ("data", "tracking_status", "object_id"),
    ("data", "tracking_status", "status"),
    ("data", "tracking_status", "substatus"),
    ("data", "tracking_status", "substatus", "code"),
    ("data", "tracking_status", "substatus", "text"),
    ("data", "tracking_status", "status_details"),
    ("data", "tracking_status", "status_date"),
    ("data", "tracking_status", "object_created"),
    ("data", "tracking_status", "location"),
    ("data", "tracking_status", "location", "city"),
    ("data", "tracking_status", "location", "state"),
    ("data", "tracking_status", "location", "zip"),
    ("data", "tracking_status", "location", "country"),
    ("data", "tracking_history", 0, "status_details"),
    ("data", "tracking_history", 0, "object_id"),
    ("data", "tracking_history", 0, "status_date"),
    ("data", "tracking_history", 0, "location", "city"),
]
LABEL_PATHS: list[tuple[Any, ...]] = [
    ("event",),
    ("test",),
    ("metadata",),
    ("surprise",),
    ("data", "object_id"),
    ("data", "status"),
    ("data", "tracking_number"),
    ("data", "tracking_url_provider"),
    ("data", "label_url"),
    ("data", "metadata"),
    ("data", "messages"),
    ("data", "rate"),
    ("data", "object_created"),
    ("data", "object_updated"),
    ("data", "eta"),
]
SAMPLES = {
    "track_updated_transit.json": TRACK_PATHS,
    "track_updated_delivery_attempted.json": TRACK_PATHS,
    "track_updated_delivered.json": TRACK_PATHS,
    "transaction_created.json": LABEL_PATHS,
}


def put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = body
    for step in path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation replaced the parent: nothing to put into
    if isinstance(target, dict) or (
        isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target)
    ):
        target[path[-1]] = value


def encode(body: Any) -> bytes:
    """JSON text as a sender would put it on the wire: lone surrogates as \\ud800-style escapes,
    NaN/Infinity as Python writes them, and the two placeholders swapped for raw text."""
    text = json.dumps(body)
    text = text.replace('"@@BIGINT@@"', "9" * 5000).replace('"@@DEEP@@"', "[" * 970 + "]" * 970)
    return text.encode()


@st.composite
def mutated_webhooks(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(SAMPLES)))
    body = copy.deepcopy(sample(name))
    body["data"]["metadata"] = ORDER_REF
    for path in draw(st.lists(st.sampled_from(SAMPLES[name]), min_size=1, max_size=4)):
        put(body, path, draw(values))
    return encode(body)


any_json_body = json_values.map(encode)
