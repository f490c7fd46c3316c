"""What the payload model lets through fits the database: identifiers are refused whole, free text is
made storable. Pure and fast, so hypothesis can try many more bodies than the integration test."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from domain.fields import IDENTIFIER_LIMITS, TEXT_LIMITS, TRUNCATED, clean_text
from domain.payload import LabelUpdate, PayloadError, TrackUpdate, is_acted_on, parse_event, parse_webhook
from store import schema
from tests.support.hostile_bodies import any_json_body, mutated_webhooks

COLUMNS = {
    "event": schema.deliveries.c.event,
    "carrier": schema.shipments.c.carrier,
    "tracking_number": schema.shipments.c.tracking_number,
    "transaction": schema.shipments.c.transaction_id,
    "scan_id": schema.shipment_scans.c.scan_id,
    "status": schema.shipment_scans.c.status,
    "substatus": schema.shipment_scans.c.substatus,
}


@pytest.mark.parametrize("kind", sorted(IDENTIFIER_LIMITS))
def test_identifier_limits_are_the_column_sizes(kind: str) -> None:
    assert IDENTIFIER_LIMITS[kind] == _length(COLUMNS[kind])


def test_a_location_label_always_fits_its_column() -> None:
    longest = TEXT_LIMITS["city"] + len(", ") + TEXT_LIMITS["region"]
    assert longest <= _length(schema.shipment_scans.c.location)


def _length(column: sa.Column[Any]) -> int:
    assert isinstance(column.type, sa.String) and column.type.length is not None, f"{column} is unbounded"
    return column.type.length


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if is_dataclass(value):
        return [s for f in fields(value) for s in strings_in(getattr(value, f.name))]
    if isinstance(value, tuple | list):
        return [s for item in value for s in strings_in(item)]
    return []


def assert_storable(event: TrackUpdate | LabelUpdate) -> None:
    for text in strings_in(event):
        text.encode("utf-8")  # no lone surrogate: PostgreSQL (and Redis) take it
        assert "\x00" not in text
    if isinstance(event, TrackUpdate):
        assert len(event.carrier) <= 64 and len(event.tracking_number) <= 128
        for scan in event.scans():
            assert len(scan.object_id) <= 64 and len(scan.status) <= 32
            assert scan.substatus_code is None or len(scan.substatus_code) <= 64
            assert len(scan.details) <= TEXT_LIMITS["details"]
            assert scan.location is None or len(scan.location.label()) <= 200
    else:
        assert len(event.object_id) <= 64 and len(event.status) <= 32
        assert event.carrier is None or len(event.carrier) <= 64
        assert event.tracking_number is None or len(event.tracking_number) <= 128


FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(raw=mutated_webhooks())
def test_an_accepted_body_parses_into_storable_values(raw: bytes) -> None:
    try:
        webhook = parse_webhook(raw)
        event = parse_event(webhook) if is_acted_on(webhook) else None
    except PayloadError as exc:
        assert str(exc).strip()
        return
    if event is not None:
        assert_storable(event)


@FAST
@given(raw=any_json_body)
def test_arbitrary_json_either_parses_or_is_a_payload_error(raw: bytes) -> None:
    try:
        webhook = parse_webhook(raw)
        if is_acted_on(webhook):
            parse_event(webhook)
    except PayloadError:
        pass


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("Left at door", "Left at door"),
        ("Left\x00 at door", "Left at door"),
        ("bad \ud800 half", "bad \ufffd half"),
        ("ring\x07bell", "ringbell"),
        ("line\nbreak\tand tab", "line\nbreak\tand tab"),
        ("مرحبا 😀", "مرحبا 😀"),
    ],
)
def test_free_text_is_cleaned_not_refused(given_text: str, expected: str) -> None:
    assert clean_text(given_text) == expected


def test_free_text_over_its_bound_is_cut_with_a_marker() -> None:
    cut = clean_text("x" * 5000, 2000)
    assert len(cut) == 2000 and cut.endswith(TRUNCATED)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tracking_number", "1Z\n999", "control character U+000A"),
        ("tracking_number", "1Z\ud800", "a lone surrogate"),
        ("carrier", "u" * 65, "longer than 64"),
    ],
)
def test_an_identifier_is_refused_by_name(field: str, value: str, message: str) -> None:
    import json

    from tests.fixtures.shippo import body

    sample = body("track_updated_transit.json")
    sample["data"][field] = value
    with pytest.raises(PayloadError, match=rf"'data\.{field}' .*{re.escape(message)}"):
        parse_event(parse_webhook(json.dumps(sample)))
