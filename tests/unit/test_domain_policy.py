"""Notification policy: what fires, where, under which key, and when it is too late or too early."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from domain.policy import (
    DEFAULT_NOTIFY,
    Intent,
    Recipient,
    is_superseded,
    kind_for_change,
    kinds_for_change,
    parse_quiet_hours,
    plan,
    quiet_hours_end,
)
from domain.shipment import Change, ShipmentState, apply, detect_stall
from domain.vocabulary import Audience, ChangeKind, Channel, ExceptionClass, NotificationKind, ShipmentStatus
from tests.unit.test_domain_fixtures import at, label, scan, track

K = NotificationKind
S = ShipmentStatus
X = ExceptionClass
NOW = at(1000)
EVERYONE = Recipient(email="ann@example.com", phone="+15550100", email_opt_in=True, sms_opt_in=True)

ACCEPTED = scan("a1", "TRANSIT", "package_accepted", 10)
ARRIVED = scan("a2", "TRANSIT", "package_arrived", 20)
OFD = scan("a3", "TRANSIT", "out_for_delivery", 30)
ATTEMPT = scan("a4", "TRANSIT", "delivery_attempted", 40, action=True)
OFD2 = scan("a5", "TRANSIT", "out_for_delivery", 50)
DELIVERED = scan("a6", "DELIVERED", "delivered", 60)


def step(state: ShipmentState, event: object) -> tuple[ShipmentState, tuple[Change, ...]]:
    new_state, changes, _ = apply(state, event, NOW)  # type: ignore[arg-type]
    return new_state, changes


def intents_for(
    *events: object,
    recipient: Recipient = EVERYONE,
    state: ShipmentState | None = None,
    notify: object = DEFAULT_NOTIFY,
) -> tuple[ShipmentState, tuple[Intent, ...]]:
    current = state or ShipmentState.empty()
    planned: list[Intent] = []
    for event in events:
        current, changes = step(current, event)
        planned.extend(plan(changes, current, recipient, notify, order_ref="1001", shipment_key="9205"))  # type: ignore[arg-type]
    return current, tuple(planned)


def summary(intents: tuple[Intent, ...]) -> list[tuple[str, str]]:
    return [(i.kind.value, i.channel.value) for i in intents]


def test_a_burst_of_three_scans_notifies_only_the_latest() -> None:
    _, intents = intents_for(track(ACCEPTED, OFD, DELIVERED))
    assert summary(intents) == [("delivered", "email"), ("delivered", "sms")]


def test_the_happy_path_notifies_shipped_out_for_delivery_and_delivered() -> None:
    _, intents = intents_for(label(), track(ACCEPTED), track(ACCEPTED, OFD), track(ACCEPTED, OFD, DELIVERED))
    assert [k for k, _ in summary(intents)] == [
        "shipped",
        "out_for_delivery",
        "out_for_delivery",
        "delivered",
        "delivered",
    ]
    assert intents[0].key == "1001:9205:shipped:email"
    assert intents[0].status_at == at(0) and intents[0].audience is Audience.CUSTOMER


def test_a_stale_event_notifies_nothing() -> None:
    state, _ = intents_for(track(ACCEPTED, DELIVERED))
    _, intents = intents_for(track(ACCEPTED, OFD), state=state)
    assert intents == ()


def test_a_late_transaction_webhook_does_not_announce_shipped() -> None:
    state, _ = intents_for(track(ACCEPTED))
    _, intents = intents_for(label(), state=state)
    assert intents == ()


def test_an_exception_opened_and_cleared_in_one_burst_is_not_announced() -> None:
    _, intents = intents_for(track(ACCEPTED, OFD, ATTEMPT, OFD2))
    assert summary(intents) == [("out_for_delivery", "email"), ("out_for_delivery", "sms")]


def test_a_delivery_attempt_notifies_the_customer_and_alerts_the_merchant_keyed_by_occurrence() -> None:
    _, intents = intents_for(track(ACCEPTED, OFD, ATTEMPT))
    assert summary(intents) == [
        ("delivery_attempted", "email"),
        ("delivery_attempted", "sms"),
        ("exception_action_required", "email"),
    ]
    assert intents[0].key == "1001:9205:delivery_attempted:email:a4"
    assert intents[2].audience is Audience.MERCHANT and intents[2].key.endswith(":a4")
    assert all(i.occurrence == "a4" for i in intents)


def test_a_second_delivery_attempt_days_later_notifies_again_under_a_new_key() -> None:
    attempt2 = scan("a7", "TRANSIT", "delivery_attempted", 90, action=True)
    _, intents = intents_for(
        track(ACCEPTED, OFD, ATTEMPT),
        track(ACCEPTED, OFD, ATTEMPT, OFD2),
        track(ACCEPTED, OFD, ATTEMPT, OFD2, attempt2),
    )
    keys = [i.key for i in intents if i.kind is K.DELIVERY_ATTEMPTED and i.channel is Channel.EMAIL]
    assert keys == ["1001:9205:delivery_attempted:email:a4", "1001:9205:delivery_attempted:email:a7"]


def test_the_same_attempt_delivered_twice_plans_nothing_the_second_time() -> None:
    state, first = intents_for(track(ACCEPTED, OFD, ATTEMPT))
    _, second = intents_for(track(ACCEPTED, OFD, ATTEMPT), state=state)
    assert first and second == ()


def test_in_transit_is_off_by_default_and_fires_when_enabled() -> None:
    _, intents = intents_for(track(ACCEPTED))
    assert intents == ()
    notify = {Channel.EMAIL: frozenset({K.IN_TRANSIT})}
    _, intents = intents_for(track(ACCEPTED), notify=notify)
    assert summary(intents) == [("in_transit", "email")]


def test_in_transit_gives_way_to_an_exception_announced_at_the_same_time() -> None:
    notify = {Channel.EMAIL: frozenset({K.IN_TRANSIT, K.DELIVERY_ATTEMPTED})}
    _, intents = intents_for(track(ACCEPTED, OFD), track(ACCEPTED, OFD, ATTEMPT), notify=notify)
    assert [k for k, _ in summary(intents)] == ["delivery_attempted", "exception_action_required"]


@pytest.mark.parametrize(
    ("recipient", "channels"),
    [
        (EVERYONE, ["email", "sms"]),
        (Recipient("ann@example.com", None, True, True), ["email"]),
        (Recipient(None, "+15550100", True, True), ["sms"]),
        (Recipient("ann@example.com", "+15550100", False, True), ["sms"]),
        (Recipient("ann@example.com", "+15550100", True, False), ["email"]),
        (Recipient(None, None, True, True), []),
    ],
)
def test_channels_follow_contacts_and_opt_ins(recipient: Recipient, channels: list[str]) -> None:
    _, intents = intents_for(track(ACCEPTED, OFD), recipient=recipient)
    assert [c for _, c in summary(intents)] == channels


def test_channels_follow_the_merchants_notify_settings() -> None:
    _, intents = intents_for(label(), track(ACCEPTED, OFD))
    assert ("shipped", "sms") not in summary(intents)  # shipped is email-only by default
    _, intents = intents_for(track(ACCEPTED, OFD), notify={Channel.SMS: frozenset({K.OUT_FOR_DELIVERY})})
    assert summary(intents) == [("out_for_delivery", "sms")]


def test_suppressed_intents_can_be_planned_with_their_reason() -> None:
    state, changes = step(ShipmentState.empty(), track(ACCEPTED, OFD))
    quiet = Recipient("ann@example.com", None, False, True)
    intents = plan(
        changes, state, quiet, DEFAULT_NOTIFY, order_ref="1", shipment_key="s", include_suppressed=True
    )
    assert {(i.channel.value, i.suppressed) for i in intents} == {
        ("email", "opted_out"),
        ("sms", "no_contact"),
    }


def test_merchant_alerts_go_by_email_whatever_the_customer_wants() -> None:
    nobody = Recipient(None, None, False, False)
    _, intents = intents_for(label("ERROR", messages=("bad address",)), recipient=nobody)
    assert [(i.kind, i.audience, i.channel) for i in intents] == [
        (K.LABEL_FAILED, Audience.MERCHANT, Channel.EMAIL)
    ]
    assert intents[0].key.startswith("1001:9205:label_failed:email:label:txn1:ERROR:")


def test_a_stall_alerts_the_merchant_once_per_occurrence() -> None:
    state, _ = step(ShipmentState.empty(), track(ACCEPTED))
    stalled, changes = detect_stall(state, at(200), timedelta(hours=96))
    intents = plan(changes, stalled, EVERYONE, DEFAULT_NOTIFY, order_ref="1001", shipment_key="9205")
    assert [(i.kind, i.channel) for i in intents] == [(K.STALLED, Channel.EMAIL)]
    assert intents[0].key == f"1001:9205:stalled:email:stalled:{ACCEPTED.status_date.isoformat()}"


@pytest.mark.parametrize(
    ("cls", "action", "expected"),
    [
        (X.DELIVERY_ATTEMPTED, True, (K.DELIVERY_ATTEMPTED, K.EXCEPTION_ACTION_REQUIRED)),
        (X.ADDRESS_ISSUE, True, (K.ADDRESS_ISSUE, K.EXCEPTION_ACTION_REQUIRED)),
        (X.DELAYED, False, (K.DELAYED,)),
        (X.HELD, True, (K.DELAYED, K.EXCEPTION_ACTION_REQUIRED)),
        (X.RETURNED_TO_SENDER, False, (K.RETURNED_TO_SENDER,)),
        (X.LOST, True, (K.DELIVERY_FAILED, K.EXCEPTION_ACTION_REQUIRED)),
        (X.UNDELIVERABLE, False, (K.DELIVERY_FAILED,)),
        (X.DISPOSED, False, (K.DELIVERY_FAILED,)),
        (X.DAMAGED, True, (K.EXCEPTION_ACTION_REQUIRED,)),
        (X.CONTACT_CARRIER, False, ()),
        (X.STALLED, True, (K.STALLED,)),
        (X.LABEL_FAILED, True, (K.LABEL_FAILED,)),
    ],
)
def test_each_exception_class_fires_its_kinds(
    cls: ExceptionClass, action: bool, expected: tuple[K, ...]
) -> None:
    change = Change(
        ChangeKind.EXCEPTION_OPENED, NOW, S.IN_TRANSIT, S.IN_TRANSIT, cls, "occ", "", None, action
    )
    assert kinds_for_change(change) == expected
    assert kind_for_change(change) == (expected[0] if expected else None)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (S.LABEL_CREATED, K.SHIPPED),
        (S.IN_TRANSIT, K.IN_TRANSIT),
        (S.OUT_FOR_DELIVERY, K.OUT_FOR_DELIVERY),
        (S.AVAILABLE_FOR_PICKUP, K.AVAILABLE_FOR_PICKUP),
        (S.DELIVERED, K.DELIVERED),
        (S.RETURNING, None),
        (S.FAILED, None),
        (S.UNKNOWN, None),
    ],
)
def test_each_status_change_fires_its_kind(status: ShipmentStatus, kind: K | None) -> None:
    change = Change(ChangeKind.STATUS_CHANGED, NOW, None, status)
    assert kind_for_change(change) is kind


def test_history_and_cleared_changes_fire_nothing() -> None:
    assert kind_for_change(Change(ChangeKind.HISTORY_ADDED, NOW, S.IN_TRANSIT, S.IN_TRANSIT)) is None
    assert (
        kind_for_change(Change(ChangeKind.EXCEPTION_CLEARED, NOW, S.IN_TRANSIT, S.IN_TRANSIT, X.DELAYED))
        is None
    )


# --------------------------------------------------------------------------- superseded at send time


def test_in_transit_after_delivered_is_superseded() -> None:
    state, _ = step(ShipmentState.empty(), track(ACCEPTED, DELIVERED))
    assert is_superseded(K.IN_TRANSIT, state)
    assert is_superseded(K.OUT_FOR_DELIVERY, state)
    assert is_superseded(K.SHIPPED, state)
    assert not is_superseded(K.DELIVERED, state)


def test_shipped_is_still_worth_sending_while_the_parcel_moves() -> None:
    state, _ = step(ShipmentState.empty(), track(ACCEPTED, OFD))
    assert not is_superseded(K.SHIPPED, state)


def test_an_exception_kind_is_superseded_once_its_exception_clears() -> None:
    state, _ = step(ShipmentState.empty(), track(ACCEPTED, OFD, ATTEMPT))
    assert not is_superseded(K.DELIVERY_ATTEMPTED, state, occurrence="a4")
    assert not is_superseded(K.EXCEPTION_ACTION_REQUIRED, state)
    assert is_superseded(K.DELIVERY_ATTEMPTED, state, occurrence="older")
    assert is_superseded(K.ADDRESS_ISSUE, state)
    cleared, _ = step(state, track(ACCEPTED, OFD, ATTEMPT, OFD2))
    assert is_superseded(K.DELIVERY_ATTEMPTED, cleared)
    assert is_superseded(K.EXCEPTION_ACTION_REQUIRED, cleared)
    assert not is_superseded(K.NOTIFICATION_FAILED, cleared)


# --------------------------------------------------------------------------- quiet hours


def utc(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(22), utc(8, day=11)),
        (utc(21), utc(8, day=11)),
        (utc(3), utc(8)),
        (utc(7, 59), utc(8)),
        (utc(8), None),
        (utc(12), None),
        (utc(20, 59), None),
    ],
)
def test_quiet_hours_wrap_midnight(now: datetime, expected: datetime | None) -> None:
    assert quiet_hours_end(now, "21:00-08:00", "UTC") == expected


def test_quiet_hours_are_read_in_the_given_time_zone() -> None:
    # 02:00 UTC is 22:00 in New York (EDT, UTC-4): quiet until 08:00 EDT = 12:00 UTC
    assert quiet_hours_end(utc(2), "21:00-08:00", "America/New_York") == utc(12)
    # 14:00 UTC is 23:00 in Tokyo: quiet until 08:00 JST next day = 23:00 UTC
    assert quiet_hours_end(utc(14), "21:00-08:00", "Asia/Tokyo") == utc(23)
    assert quiet_hours_end(utc(14), "21:00-08:00", "America/New_York") is None


def test_a_window_that_does_not_wrap_works_too() -> None:
    assert quiet_hours_end(utc(13), "12:00-14:30", "UTC") == utc(14, 30)
    assert quiet_hours_end(utc(15), "12:00-14:30", "UTC") is None


def test_no_window_means_never_quiet() -> None:
    assert quiet_hours_end(utc(3), None, "UTC") is None
    assert quiet_hours_end(utc(3), "", "Europe/Paris") is None


def test_a_naive_now_is_read_as_utc() -> None:
    assert quiet_hours_end(datetime(2026, 6, 10, 3), "21:00-08:00", "UTC") == utc(8)


@pytest.mark.parametrize(
    "window", ["9pm-8am", "21:00", "25:00-08:00", "21:60-08:00", "08:00-08:00", "21:00-08:00-09:00"]
)
def test_a_malformed_window_is_a_value_error(window: str) -> None:
    with pytest.raises(ValueError):
        parse_quiet_hours(window)


def test_an_unknown_time_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        quiet_hours_end(utc(3), "21:00-08:00", "Mars/Olympus")


def test_parse_quiet_hours_reads_start_and_end() -> None:
    assert parse_quiet_hours(" 21:00 - 8:00 ") == (time(21), time(8))
