"""Shippo test mode in the pure core: a test event marks its shipment ``test``, and the policy
keeps customers out of it unless the merchant allows test events; merchant alerts still fire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.payload import is_test, parse_event, parse_webhook
from domain.policy import DEFAULT_NOTIFY, Recipient, plan
from domain.shipment import ShipmentState, apply
from domain.vocabulary import Audience, NotificationKind
from tests.fixtures.shippo import body, raw, scenario

NOW = datetime(2026, 3, 10, tzinfo=UTC)
RECIPIENT = Recipient(email="jane@example.com", phone="+15551230001", email_opt_in=True, sms_opt_in=True)


def _flagged(raw_body: bytes, *, envelope: bool, data: bool) -> bytes:
    parsed = json.loads(raw_body)
    parsed["test"], parsed["data"]["test"] = envelope, data
    return json.dumps(parsed).encode()


@pytest.mark.parametrize(("envelope", "data"), [(True, True), (True, False), (False, True), (False, False)])
def test_either_test_flag_makes_a_test_event(envelope: bool, data: bool) -> None:
    webhook = parse_webhook(_flagged(raw("track_updated_transit.json"), envelope=envelope, data=data))
    event = parse_event(webhook)
    assert event is not None
    assert is_test(webhook) is event.test is (envelope or data)


def test_the_test_mode_sample_marks_its_shipment_test_and_the_mark_is_kept() -> None:
    event = parse_event(parse_webhook(raw("track_updated_test_mode.json")))
    assert event is not None and event.test
    state, _, _ = apply(ShipmentState.empty(), event, NOW)
    assert state.test
    assert ShipmentState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert ShipmentState.from_dict({k: v for k, v in state.to_dict().items() if k != "test"}).test is False


def _returned_scenario_plans(
    *, test: bool, notify_test_events: bool
) -> list[tuple[NotificationKind, str | None]]:
    state = ShipmentState.empty()
    out: list[tuple[NotificationKind, str | None]] = []
    for raw_body in scenario("returned"):
        event = parse_event(parse_webhook(_flagged(raw_body, envelope=test, data=test)))
        assert event is not None
        state, changes, _ = apply(state, event, NOW)
        intents = plan(
            changes,
            state,
            RECIPIENT,
            DEFAULT_NOTIFY,
            order_ref="1003",
            shipment_key="s1",
            include_suppressed=True,
            notify_test_events=notify_test_events,
        )
        out.extend((i.kind, i.suppressed) for i in intents)
    return out


def test_a_test_shipment_tells_no_customer_unless_the_merchant_allows_it() -> None:
    live = _returned_scenario_plans(test=False, notify_test_events=False)
    held = _returned_scenario_plans(test=True, notify_test_events=False)
    allowed = _returned_scenario_plans(test=True, notify_test_events=True)
    assert [k for k, _ in held] == [k for k, _ in live] == [k for k, _ in allowed]
    assert allowed == live
    customer_sent = [k for k, reason in live if k.audience is Audience.CUSTOMER and reason is None]
    assert customer_sent, "the live run tells the customer: the comparison would prove nothing"
    for (kind, live_reason), (_, held_reason) in zip(live, held, strict=True):
        if kind.audience is Audience.MERCHANT:
            assert held_reason is live_reason is None, "merchant alerts still fire"
        else:
            assert held_reason == "test_event"
    assert body("track_updated_test_mode.json")["test"] is True
