"""The shipment state machine, example by example."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.payload import LabelUpdate, TrackUpdate
from domain.shipment import (
    Change,
    OpenException,
    ShipmentState,
    apply,
    detect_stall,
    is_terminal,
)
from domain.vocabulary import ChangeKind, ExceptionClass, ShipmentStatus
from tests.unit.test_domain_fixtures import SCENARIOS, at, label, scan, scenario_events, track

S = ShipmentStatus
X = ExceptionClass
NOW = at(1000)
EMPTY = ShipmentState.empty()

ACCEPTED = scan("a1", "TRANSIT", "package_accepted", 10)
ARRIVED = scan("a2", "TRANSIT", "package_arrived", 20, city="Kansas City")
OFD = scan("a3", "TRANSIT", "out_for_delivery", 30)
ATTEMPT = scan("a4", "TRANSIT", "delivery_attempted", 40, action=True)
OFD2 = scan("a5", "TRANSIT", "out_for_delivery", 50)
DELIVERED = scan("a6", "DELIVERED", "delivered", 60, city="Spotsylvania")


def run(
    *events: TrackUpdate | LabelUpdate, state: ShipmentState = EMPTY
) -> tuple[ShipmentState, list[Change]]:
    changes: list[Change] = []
    for event in events:
        state, new, _ = apply(state, event, NOW)
        changes.extend(new)
    return state, changes


def kinds(changes: list[Change]) -> list[tuple[ChangeKind, object]]:
    return [
        (c.kind, c.to_status if c.kind is ChangeKind.STATUS_CHANGED else c.exception)
        for c in changes
        if c.kind is not ChangeKind.HISTORY_ADDED
    ]


def test_a_label_then_scans_walk_the_happy_path() -> None:
    state, changes = run(label(), track(ACCEPTED), track(ACCEPTED, OFD), track(ACCEPTED, OFD, DELIVERED))
    assert state.status is S.DELIVERED
    assert kinds(changes) == [
        (ChangeKind.STATUS_CHANGED, S.LABEL_CREATED),
        (ChangeKind.STATUS_CHANGED, S.IN_TRANSIT),
        (ChangeKind.STATUS_CHANGED, S.OUT_FOR_DELIVERY),
        (ChangeKind.STATUS_CHANGED, S.DELIVERED),
    ]
    assert state.last_scan_at == DELIVERED.status_date == state.last_event_at
    assert state.last_location == "Spotsylvania, CO"
    assert state.tracking_url_provider is not None and state.label_url is not None
    assert state.metadata == "Order 1001"


def test_applying_the_same_event_twice_is_a_no_op() -> None:
    event = track(ACCEPTED, OFD)
    once, _, _ = apply(EMPTY, event, NOW)
    twice, changes, new_scans = apply(once, event, NOW)
    assert twice == once
    assert changes == () and new_scans == ()
    labelled, _, _ = apply(once, label(), NOW)
    again, changes, _ = apply(labelled, label(), NOW)
    assert again == labelled and changes == ()


def test_a_track_update_fills_the_gaps_of_lost_webhooks_from_its_history() -> None:
    state, changes, new_scans = apply(EMPTY, track(ACCEPTED, ARRIVED, OFD), NOW)
    assert [s.object_id for s in new_scans] == ["a1", "a2", "a3"]
    assert [c.scan_id for c in changes if c.kind is ChangeKind.HISTORY_ADDED] == ["a1", "a2", "a3"]
    assert state.status is S.OUT_FOR_DELIVERY


def test_only_scans_new_to_the_history_are_returned() -> None:
    state, _, _ = apply(EMPTY, track(ACCEPTED), NOW)
    _, _, new_scans = apply(state, track(ACCEPTED, ARRIVED), NOW)
    assert [s.object_id for s in new_scans] == ["a2"]


def test_a_stale_in_transit_scan_never_reopens_a_delivered_shipment() -> None:
    state, _ = run(track(ACCEPTED, DELIVERED))
    late = scan("late", "TRANSIT", "package_arrived", 55)
    after, changes = run(track(late), state=state)
    assert after.status is S.DELIVERED
    assert kinds(changes) == []
    assert "late" in after.applied


def test_a_newer_in_transit_scan_still_does_not_regress_a_delivered_shipment() -> None:
    state, _ = run(track(DELIVERED))
    after, changes = run(track(scan("odd", "TRANSIT", "package_arrived", 70)), state=state)
    assert after.status is S.DELIVERED and kinds(changes) == []
    assert after.last_scan_at == at(70)


def test_a_genuinely_newer_return_moves_a_delivered_shipment_on() -> None:
    state, _ = run(track(DELIVERED))
    after, changes = run(track(scan("r1", "RETURNED", "return_to_sender", 80)), state=state)
    assert after.status is S.RETURNING
    assert kinds(changes) == [
        (ChangeKind.STATUS_CHANGED, S.RETURNING),
        (ChangeKind.EXCEPTION_OPENED, X.RETURNED_TO_SENDER),
    ]


def test_a_delivered_scan_while_returning_means_returned_to_the_sender() -> None:
    state, changes = run(
        track(
            ACCEPTED, scan("r1", "RETURNED", "return_to_sender", 30), scan("r2", "DELIVERED", "delivered", 40)
        )
    )
    assert state.status is S.RETURNED
    assert state.exception is None
    assert (ChangeKind.EXCEPTION_CLEARED, X.RETURNED_TO_SENDER) in kinds(changes)


def test_carrier_transit_scans_during_a_return_keep_the_return() -> None:
    state, _ = run(
        track(
            ACCEPTED,
            scan("r1", "RETURNED", "return_to_sender", 30),
            scan("r2", "TRANSIT", "package_departed", 40),
        )
    )
    assert state.status is S.RETURNING
    assert state.exception is not None and state.exception.cls is X.RETURNED_TO_SENDER


def test_a_delivery_attempt_opens_an_exception_that_the_next_delivery_run_clears() -> None:
    state, changes = run(track(ACCEPTED, OFD, ATTEMPT))
    assert state.status is S.IN_TRANSIT
    assert state.exception == OpenException(
        X.DELIVERY_ATTEMPTED, True, ATTEMPT.status_date, "delivery_attempted text", "a4"
    )
    assert state.exception.to_contract() == {
        "class": "delivery_attempted",
        "action_required": True,
        "since": ATTEMPT.status_date.isoformat(),
        "detail": "delivery_attempted text",
    }
    after, changes = run(track(ACCEPTED, OFD, ATTEMPT, OFD2), state=state)
    assert after.exception is None
    assert kinds(changes) == [
        (ChangeKind.STATUS_CHANGED, S.OUT_FOR_DELIVERY),
        (ChangeKind.EXCEPTION_CLEARED, X.DELIVERY_ATTEMPTED),
    ]


def test_another_exception_class_replaces_the_open_one() -> None:
    state, changes = run(
        track(
            ACCEPTED,
            scan("x1", "TRANSIT", "address_issue", 20, action=True),
            scan("x2", "FAILURE", "package_lost", 30, action=True),
        )
    )
    assert state.status is S.FAILED
    assert (
        state.exception is not None and state.exception.cls is X.LOST and state.exception.occurrence == "x2"
    )
    assert kinds(changes)[-3:] == [
        (ChangeKind.STATUS_CHANGED, S.FAILED),
        (ChangeKind.EXCEPTION_CLEARED, X.ADDRESS_ISSUE),
        (ChangeKind.EXCEPTION_OPENED, X.LOST),
    ]


def test_the_same_class_again_while_open_is_the_same_problem() -> None:
    state, changes = run(
        track(ACCEPTED, scan("d1", "TRANSIT", "delayed", 20), scan("d2", "TRANSIT", "delayed", 30))
    )
    opened = [c for c in changes if c.kind is ChangeKind.EXCEPTION_OPENED]
    assert [c.occurrence for c in opened] == ["d1"]
    assert state.exception is not None and state.exception.occurrence == "d1"


def test_an_unknown_scan_never_replaces_a_known_status_nor_clears_an_exception() -> None:
    state, changes = run(track(ACCEPTED, ATTEMPT, scan("u1", "UNKNOWN", None, 50)))
    assert state.status is S.IN_TRANSIT
    assert state.exception is not None and state.exception.cls is X.DELIVERY_ATTEMPTED


def test_an_unknown_first_scan_gives_status_unknown_then_a_label_moves_it_on() -> None:
    state, _ = run(track(scan("u1", "UNKNOWN", None, 5)))
    assert state.status is S.UNKNOWN
    state, _ = run(label(hours=0), state=state)
    assert state.status is S.LABEL_CREATED


def test_a_flagged_unexplained_scan_opens_contact_carrier() -> None:
    state, _ = run(track(ACCEPTED, scan("n1", "TRANSIT", "brand_new", 20, action=True)))
    assert state.exception is not None and state.exception.cls is X.CONTACT_CARRIER


def test_a_late_transaction_webhook_never_regresses_a_moving_shipment_but_fills_its_links() -> None:
    state, _ = run(track(ACCEPTED, OFD))
    after, changes = run(label(), state=state)
    assert after.status is S.OUT_FOR_DELIVERY
    assert changes == []
    assert after.tracking_url_provider is not None and after.label_url is not None


def test_a_label_error_opens_label_failed_and_a_later_success_clears_it() -> None:
    state, changes = run(label("ERROR", messages=("address not found",)))
    assert state.status is S.LABEL_FAILED
    assert state.exception is not None and state.exception.cls is X.LABEL_FAILED
    assert state.exception.detail == "address not found"
    after, changes = run(label("SUCCESS", hours=1), state=state)
    assert after.status is S.LABEL_CREATED and after.exception is None


def test_a_refund_voids_an_unused_label_but_not_a_moving_shipment() -> None:
    state, _ = run(label(), label("REFUNDED", hours=5))
    assert state.status is S.REFUNDED and is_terminal(state.status)
    moving, _ = run(track(ACCEPTED), label("REFUNDPENDING", hours=15))
    assert moving.status is S.IN_TRANSIT


@pytest.mark.parametrize("status", ["WAITING", "QUEUED", "REFUNDREJECTED"])
def test_label_statuses_without_progress_change_nothing(status: str) -> None:
    state, changes = run(label(status))
    assert state.status is None and changes == []


def test_the_eta_follows_the_newest_track_update() -> None:
    state, _ = run(track(ACCEPTED, OFD, eta=at(100)))
    state, _ = run(track(ACCEPTED, eta=at(200)), state=state)
    assert state.eta == at(100)
    state, _ = run(track(ACCEPTED, OFD, DELIVERED, eta=at(70)), state=state)
    assert state.eta == at(70)


def test_state_round_trips_through_a_json_safe_dict() -> None:
    import json

    state, _ = run(label(), track(ACCEPTED, OFD, ATTEMPT, eta=at(90)))
    data = json.loads(json.dumps(state.to_dict()))
    assert ShipmentState.from_dict(data) == state
    assert data["status"] == "in_transit" and data["exception"]["class"] == "delivery_attempted"
    assert ShipmentState.from_dict(EMPTY.to_dict()) == EMPTY


def test_a_change_serializes_its_words() -> None:
    _, changes = run(track(ACCEPTED, ATTEMPT))
    opened = next(c for c in changes if c.kind is ChangeKind.EXCEPTION_OPENED).to_dict()
    assert opened["kind"] == "exception_opened" and opened["exception"] == "delivery_attempted"
    assert opened["occurrence"] == "a4" and opened["action_required"] is True


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_each_scenario_ends_where_its_story_does(path: object) -> None:
    expected = {
        "scenario-delivered.jsonl": (S.DELIVERED, None),
        "scenario-attempt-then-delivered.jsonl": (S.DELIVERED, None),
        "scenario-returned.jsonl": (S.RETURNING, X.RETURNED_TO_SENDER),
    }
    state, _ = run(*scenario_events(path))  # type: ignore[arg-type]
    assert (state.status, state.exception.cls if state.exception else None) == expected[path.name]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- stalls

STALL = timedelta(hours=96)


def test_a_shipment_without_a_scan_for_longer_than_the_threshold_stalls_once() -> None:
    state, _ = run(track(ACCEPTED))
    quiet, changes = detect_stall(state, ACCEPTED.status_date + timedelta(hours=96), STALL)
    assert changes == () and quiet == state
    stalled, changes = detect_stall(state, ACCEPTED.status_date + timedelta(hours=97), STALL)
    assert [c.exception for c in changes] == [X.STALLED]
    assert (
        stalled.exception is not None
        and stalled.exception.occurrence == f"stalled:{ACCEPTED.status_date.isoformat()}"
    )
    again, changes = detect_stall(stalled, ACCEPTED.status_date + timedelta(hours=200), STALL)
    assert changes == () and again == stalled


def test_a_new_scan_clears_a_stall_and_a_later_stall_is_a_new_occurrence() -> None:
    state, _ = run(track(ACCEPTED))
    stalled, _ = detect_stall(state, at(200), STALL)
    moving, changes = run(track(ACCEPTED, ARRIVED), state=stalled)
    assert moving.exception is None
    assert (ChangeKind.EXCEPTION_CLEARED, X.STALLED) in kinds(changes)
    restalled, _ = detect_stall(moving, at(400), STALL)
    assert stalled.exception is not None and restalled.exception is not None
    assert restalled.exception.occurrence != stalled.exception.occurrence


def test_a_label_that_never_moves_stalls_from_its_label_time() -> None:
    state, _ = run(label())
    _, changes = detect_stall(state, at(97), STALL)
    assert [c.exception for c in changes] == [X.STALLED]


@pytest.mark.parametrize(
    "events",
    [(), (track(DELIVERED),), (track(ACCEPTED, ATTEMPT),)],
    ids=["empty", "delivered", "exception_open"],
)
def test_empty_terminal_or_excepted_shipments_never_stall(events: tuple[TrackUpdate, ...]) -> None:
    state, _ = run(*events)
    assert detect_stall(state, at(10_000), STALL) == (state, ())


def test_terminal_statuses() -> None:
    assert {s for s in ShipmentStatus if is_terminal(s)} == {S.DELIVERED, S.RETURNED, S.FAILED, S.REFUNDED}
    assert not is_terminal(None)
