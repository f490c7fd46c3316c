"""`make demo` replays a day that exercises everything a newcomer should see on /ops."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from admin.demo import MERCHANTS, build_day
from domain.payload import LabelUpdate, TrackUpdate, parse_event, parse_webhook, webhook_identity
from domain.shipment import ShipmentState, apply
from domain.vocabulary import ExceptionClass

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_the_demo_day_is_valid_shippo_traffic_for_three_merchants() -> None:
    day = build_day(NOW)
    assert {slug for slug, _ in day} == set(MERCHANTS) and len(MERCHANTS) == 3
    events = [parse_event(parse_webhook(json.dumps(body))) for _, body in day]
    assert all(isinstance(e, TrackUpdate | LabelUpdate) for e in events)
    assert len({e.carrier for e in events if isinstance(e, TrackUpdate)}) >= 5


def test_the_demo_day_has_duplicates_and_out_of_order_deliveries() -> None:
    day = build_day(NOW)
    identities = Counter(webhook_identity(parse_webhook(json.dumps(body))) for _, body in day)
    assert sum(n - 1 for n in identities.values()) >= 5
    scan_times = [
        body["data"]["tracking_status"]["status_date"] for _, body in day if body["event"] == "track_updated"
    ]
    assert scan_times != sorted(scan_times)


def test_the_demo_day_opens_every_exception_class_a_carrier_can_cause() -> None:
    states: dict[str, ShipmentState] = {}
    seen: set[ExceptionClass] = set()
    for _, body in build_day(NOW):
        event = parse_event(parse_webhook(json.dumps(body)))
        assert event is not None
        key = (
            event.tracking_number
            if isinstance(event, TrackUpdate)
            else (event.tracking_number or event.object_id)
        )
        state, changes, _ = apply(states.get(key, ShipmentState.empty()), event, NOW)
        states[key] = state
        seen |= {c.exception for c in changes if c.exception is not None}
    # stalled is opened by the scheduler a little later (one parcel's last scan is five days old)
    assert seen >= set(ExceptionClass) - {ExceptionClass.STALLED}


def test_one_demo_merchant_signs_with_hmac_and_one_speaks_spanish() -> None:
    assert [slug for slug, m in MERCHANTS.items() if m.get("hmac_secrets")] == ["northwind"]
    assert MERCHANTS["tienda-sol"]["default_locale"] == "es"
