"""Every sample body parses; loaders and builders the other domain tests share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.payload import (
    LabelUpdate,
    Location,
    Scan,
    TrackUpdate,
    Webhook,
    is_acted_on,
    parse_event,
    parse_webhook,
    webhook_identity,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shippo"
SAMPLES = sorted(FIXTURES.glob("*.json"))
SCENARIOS = sorted(FIXTURES.glob("scenario-*.jsonl"))
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def load_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


def load_raw(name: str) -> str:
    return (FIXTURES / name).read_text()


def scenario_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def scenario_events(path: Path) -> list[TrackUpdate | LabelUpdate]:
    events = []
    for line in scenario_lines(path):
        event = parse_event(parse_webhook(line))
        assert event is not None
        events.append(event)
    return events


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def scan(
    object_id: str,
    status: str,
    code: str | None,
    hours: float,
    action: bool | None = None,
    city: str = "Denver",
) -> Scan:
    return Scan(
        object_id=object_id,
        status=status,
        substatus_code=code,
        substatus_text=f"{code} text" if code else None,
        action_required=action,
        details=f"{code or status} at {city}",
        status_date=at(hours),
        created=at(hours + 0.5),
        location=Location(city=city, state="CO", zip="", country="US"),
    )


def track(
    *scans: Scan, carrier: str = "usps", number: str = "9205", eta: datetime | None = None
) -> TrackUpdate:
    """A track update whose latest is the last scan given and whose history is all of them."""
    return TrackUpdate(
        carrier=carrier,
        tracking_number=number,
        transaction_id="txn1",
        metadata=None,
        eta=eta,
        latest=scans[-1],
        history=tuple(scans),
        test=False,
    )


def label(
    status: str = "SUCCESS",
    hours: float = 0.0,
    object_id: str = "txn1",
    messages: tuple[str, ...] = (),
    number: str | None = "9205",
) -> LabelUpdate:
    return LabelUpdate(
        object_id=object_id,
        status=status,
        tracking_number=number if status == "SUCCESS" else None,
        carrier="usps",
        tracking_url_provider="https://tools.usps.com/go/TrackConfirmAction?tLabels=9205"
        if status == "SUCCESS"
        else None,
        label_url="https://deliver.goshippo.com/label.pdf" if status == "SUCCESS" else None,
        eta=None,
        metadata="Order 1001",
        messages=messages,
        created=at(hours),
        updated=None,
        test=False,
    )


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_body_parses_into_a_webhook_and_an_event_when_acted_on(path: Path) -> None:
    webhook = parse_webhook(path.read_bytes())
    assert isinstance(webhook, Webhook)
    event = parse_event(webhook)
    assert (event is not None) == is_acted_on(webhook)
    assert webhook_identity(webhook) == webhook_identity(parse_webhook(path.read_text()))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_line_parses_and_has_a_distinct_identity(path: Path) -> None:
    lines = scenario_lines(path)
    identities = [webhook_identity(parse_webhook(line)) for line in lines]
    assert len(set(identities)) == len(lines)
    events = scenario_events(path)
    assert isinstance(events[0], LabelUpdate)
    assert all(isinstance(e, TrackUpdate) for e in events[1:])


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_tracks_carry_the_history_up_to_their_latest_scan(path: Path) -> None:
    tracks = [e for e in scenario_events(path) if isinstance(e, TrackUpdate)]
    assert len(tracks) >= 2, "a scenario moves at least once"
    for previous, current in zip(tracks, tracks[1:], strict=False):
        assert current.latest.status_date > previous.latest.status_date
        assert {s.object_id for s in previous.scans()} <= {s.object_id for s in current.scans()}
