"""Property tests: Shippo's delivery (any order, duplicated, gaps) never changes the story we tell."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.payload import LabelUpdate, Location, Scan, TrackUpdate
from domain.shipment import Change, ShipmentState, apply, is_terminal, progress_rank
from domain.vocabulary import ChangeKind
from tests.unit.test_domain_fixtures import SCENARIOS, T0, label, scenario_events, track

Event = TrackUpdate | LabelUpdate
NOW = T0 + timedelta(days=365)
CSV_ROWS = list(csv.DictReader((Path(__file__).resolve().parents[2] / "domain" / "substatus.csv").open()))
SHIPPO_STATUSES = ["PRE_TRANSIT", "TRANSIT", "DELIVERED", "RETURNED", "FAILURE", "UNKNOWN"]
FAST = settings(max_examples=200, deadline=None)


def deliver(
    events: Sequence[Event], state: ShipmentState | None = None
) -> tuple[list[ShipmentState], list[Change]]:
    """Every intermediate state, and all changes, of applying events one by one."""
    current = state or ShipmentState.empty()
    states: list[ShipmentState] = []
    changes: list[Change] = []
    for event in events:
        current, new, _ = apply(current, event, NOW)
        states.append(current)
        changes.extend(new)
    return states, changes


def story(state: ShipmentState) -> tuple[object, ...]:
    return (state.status, state.exception, state.last_scan_at)


def deliveries(events: Sequence[Event]) -> st.SearchStrategy[list[Event]]:
    """Some of the events (the last one always), in any order, with duplicates."""
    n = len(events)
    indices = st.lists(st.integers(0, n - 1), max_size=n).map(lambda extra: [*range(n), *extra])
    return indices.flatmap(st.permutations).map(lambda order: [events[i] for i in order])


def assert_well_behaved(states: list[ShipmentState], changes: list[Change]) -> None:
    ranks = [progress_rank(s.status) for s in states]
    assert ranks == sorted(ranks), [s.status for s in states]
    opened = Counter(c.occurrence for c in changes if c.kind is ChangeKind.EXCEPTION_OPENED)
    assert all(count == 1 for count in opened.values()), opened


# --------------------------------------------------------------------------- the three recorded lifetimes

SCENARIO_EVENTS = {path.name: scenario_events(path) for path in SCENARIOS}


@pytest.mark.parametrize("name", sorted(SCENARIO_EVENTS))
@FAST
@given(data=st.data())
def test_a_scenario_delivered_shuffled_and_duplicated_ends_as_delivered_in_order(
    name: str, data: st.DataObject
) -> None:
    events = SCENARIO_EVENTS[name]
    in_order, _ = deliver(events)
    shuffled = data.draw(deliveries(events))
    states, changes = deliver(shuffled)
    assert story(states[-1]) == story(in_order[-1])
    assert_well_behaved(states, changes)
    terminal_from = next((i for i, s in enumerate(states) if is_terminal(s.status)), None)
    if terminal_from is not None:  # the scenarios' terminal scan is their newest: nothing may move it
        assert {s.status for s in states[terminal_from:]} == {states[terminal_from].status}


@pytest.mark.parametrize("name", sorted(SCENARIO_EVENTS))
def test_a_scenario_notifies_each_exception_once_even_when_every_webhook_comes_twice(name: str) -> None:
    events = SCENARIO_EVENTS[name]
    doubled = [e for event in events for e in (event, event)]
    states, changes = deliver(doubled)
    assert_well_behaved(states, changes)
    assert states[-1] == deliver(events)[0][-1]


# --------------------------------------------------------------------------- generated lifetimes


@st.composite
def scans(
    draw: st.DrawFn, start_hours: float = 1.0, min_size: int = 1, max_size: int = 12, min_step: int = 0
) -> list[Scan]:
    n = draw(st.integers(min_size, max_size))
    hours = start_hours
    out: list[Scan] = []
    for i in range(n):
        hours += draw(st.integers(min_step, 30))
        row = draw(st.one_of(st.sampled_from(CSV_ROWS), st.none()))
        if row is None:
            status = draw(st.sampled_from(SHIPPO_STATUSES))
            code = draw(st.sampled_from([None, "other", "never_seen_before"]))
        else:
            status, code = row["status"], row["code"]
        flag = draw(st.one_of(st.none(), st.booleans()))
        moment = T0 + timedelta(hours=hours)
        out.append(
            Scan(
                object_id=f"s{i}-{draw(st.integers(0, 9))}",
                status=status,
                substatus_code=code,
                substatus_text=None,
                action_required=flag,
                details=f"{code}",
                status_date=moment,
                created=moment + timedelta(minutes=40),
                location=Location(city=f"City {i}", state="ST"),
            )
        )
    unique = {s.object_id: s for s in out}
    return list(unique.values())


def lifetime(history: list[Scan]) -> list[Event]:
    """A label, then one track webhook per scan carrying the history so far (as Shippo does)."""
    return [label(hours=0), *(track(*history[: i + 1]) for i in range(len(history)))]


@FAST
@given(data=st.data(), history=scans())
def test_a_generated_lifetime_in_any_order_ends_as_in_order(data: st.DataObject, history: list[Scan]) -> None:
    events = lifetime(history)
    in_order, in_order_changes = deliver(events)
    assert_well_behaved(in_order, in_order_changes)
    shuffled = data.draw(deliveries(events))
    states, changes = deliver(shuffled)
    assert story(states[-1]) == story(in_order[-1])
    assert states[-1].applied == in_order[-1].applied
    assert_well_behaved(states, changes)


@FAST
# Strictly increasing scan times here: two scans of the same exception class at the very same
# instant are ambiguous, and the state machine keeps the occurrence it saw first on purpose
# (re-keying it would let a second notification out for the same problem).
@given(data=st.data(), history=scans(min_size=2, min_step=1))
def test_lost_webhooks_are_filled_in_by_later_ones(data: st.DataObject, history: list[Scan]) -> None:
    # Only TRACK webhooks can be filled in: each carries the whole scan history. The label
    # (a transaction webhook) is in no later body, so it is always delivered here.
    events = lifetime(history)
    label_event, tracks = events[0], events[1:]
    kept = data.draw(st.lists(st.sampled_from(tracks[:-1]), max_size=len(tracks))) if len(tracks) > 1 else []
    states, changes = deliver([label_event, *kept, tracks[-1]])
    assert story(states[-1]) == story(deliver(events)[0][-1])
    assert_well_behaved(states, changes)


@FAST
@given(history=scans(start_hours=100), stale=scans(start_hours=0, max_size=6))
def test_stale_scans_are_history_only(history: list[Scan], stale: list[Scan]) -> None:
    states, _ = deliver(lifetime(history))
    before = states[-1]
    assert before.last_event_at is not None
    old = [s for s in stale if s.status_date < before.last_event_at]
    stale_ids = [replace(s, object_id="stale-" + s.object_id) for s in old]
    if not stale_ids:
        return
    after, changes, new_scans = apply(before, track(*stale_ids), NOW)
    assert (after.status, after.exception, after.last_event_at) == (
        before.status,
        before.exception,
        before.last_event_at,
    )
    assert {c.kind for c in changes} == {ChangeKind.HISTORY_ADDED}
    assert len(new_scans) == len(stale_ids)


@FAST
@given(history=scans())
def test_any_state_round_trips_through_its_dict(history: list[Scan]) -> None:
    states, _ = deliver(lifetime(history))
    assert states
    for state in states:
        assert ShipmentState.from_dict(state.to_dict()) == state
