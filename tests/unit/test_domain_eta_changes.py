"""ETA changes in the pure core: the event identity carries an eta only when it moved, and any
sequence of duplicate and eta-changed track bodies tells ``eta_changed`` exactly once per new eta.

The pipeline is modelled as the receiver and worker run it: ``webhook_identity`` is the dedupe key
(a key seen before is a duplicate, never applied), ``domain.shipment.apply`` then
``domain.policy.plan``, and a notification key already written writes nothing (the unique
``idempotency_key``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.payload import parse_event, parse_webhook, webhook_identity
from domain.policy import Recipient, is_superseded, plan
from domain.shipment import ShipmentState, apply
from domain.vocabulary import ChangeKind, Channel, NotificationKind, ShipmentStatus
from tests.fixtures.shippo import body

K = NotificationKind
NOW = datetime(2026, 3, 10, tzinfo=UTC)
TRACK = body("track_updated_transit.json")  # eta == original_eta
ORIGINAL = datetime.fromisoformat(TRACK["data"]["original_eta"])
ETAS = [ORIGINAL + timedelta(days=d) for d in (0, 1, 2, 3)]  # ETAS[0]: the estimate did not move
RECIPIENT = Recipient(email="jane@example.com", phone="+15551230001", email_opt_in=True, sms_opt_in=True)
NOTIFY = {Channel.EMAIL: frozenset({K.ETA_CHANGED}), Channel.SMS: frozenset({K.ETA_CHANGED})}


def _written(moment: datetime, style: int) -> str | None:
    """One instant, written the ways Shippo's timestamps come (or null when style says so)."""
    forms = (
        moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        moment.isoformat(),
        (moment - timedelta(hours=5)).replace(tzinfo=None).isoformat() + "-05:00",
        moment.replace(tzinfo=None).isoformat(),  # naive: Shippo test mode, read as UTC
    )
    return forms[style % len(forms)]


def track(eta: str | None, *, original: str | None = TRACK["data"]["original_eta"]) -> bytes:
    data: dict[str, Any] = json.loads(json.dumps(TRACK))
    data["data"]["eta"] = eta
    data["data"]["original_eta"] = original
    return json.dumps(data).encode()


def _scan_identity() -> str:
    d = TRACK["data"]
    return f"track:{d['carrier'].lower()}:{d['tracking_number']}:{d['tracking_status']['object_id']}"


class Pipeline:
    """Receiver dedupe + worker apply + policy + unique notification keys, in memory."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.keys: set[str] = set()
        self.state = ShipmentState.empty()
        self.told: list[tuple[Channel, str | None]] = []

    def post(self, raw: bytes) -> bool:
        webhook = parse_webhook(raw)
        identity = webhook_identity(webhook)
        if identity in self.seen:
            return False
        self.seen.add(identity)
        event = parse_event(webhook)
        assert event is not None
        self.state, changes, _ = apply(self.state, event, NOW)
        for intent in plan(changes, self.state, RECIPIENT, NOTIFY, order_ref="1001", shipment_key="s1"):
            if intent.kind is K.ETA_CHANGED and intent.key not in self.keys:
                self.keys.add(intent.key)
                self.told.append((intent.channel, intent.occurrence))
        return True


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(ETAS) - 1), st.integers(0, 9)), max_size=14))
def test_any_sequence_tells_eta_changed_exactly_once_per_new_eta(draws: list[tuple[int, int]]) -> None:
    pipeline = Pipeline()
    assert pipeline.post(track(TRACK["data"]["eta"]))
    sequence = [(ETAS[i], _written(ETAS[i], style)) for i, style in draws]
    applied = [moment for moment, written in sequence if pipeline.post(track(written))]

    moved_to = [moment for moment, _ in sequence if moment != ORIGINAL]
    assert applied == list(dict.fromkeys(moved_to)), "each distinct new eta applied once, the rest deduped"
    for channel in Channel:
        told = [occurrence for ch, occurrence in pipeline.told if ch is channel]
        assert told == [m.isoformat() for m in dict.fromkeys(moved_to)], "one eta_changed per distinct eta"
    assert pipeline.state.eta == (applied[-1] if applied else ORIGINAL)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(ETAS) - 1), st.integers(0, 9), st.integers(0, 9))
def test_identical_bodies_and_the_same_eta_written_differently_always_dedupe(
    index: int, style: int, other_style: int
) -> None:
    moment = ETAS[index]
    raw = track(_written(moment, style))
    assert webhook_identity(parse_webhook(raw)) == webhook_identity(parse_webhook(bytes(raw)))
    same_instant = track(_written(moment, other_style))
    assert webhook_identity(parse_webhook(raw)) == webhook_identity(parse_webhook(same_instant))
    pipeline = Pipeline()
    pipeline.post(track(TRACK["data"]["eta"]))
    pipeline.post(raw)
    before = (pipeline.state, list(pipeline.told))
    assert not pipeline.post(raw) and not pipeline.post(same_instant)
    assert (pipeline.state, pipeline.told) == before


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 9), st.integers(0, 9), st.booleans())
def test_a_track_whose_eta_did_not_move_keeps_its_scan_only_identity(
    style: int, original_style: int, eta_null: bool
) -> None:
    """What every track was identified by before: retries from then still dedupe."""
    if eta_null:
        raw = track(None, original=_written(ORIGINAL, original_style))
    else:
        raw = track(_written(ORIGINAL, style), original=_written(ORIGINAL, original_style))
    assert webhook_identity(parse_webhook(raw)) == _scan_identity()


def test_a_moved_eta_is_part_of_the_identity_even_without_an_original() -> None:
    moved = ETAS[2]
    expected = f"{_scan_identity()}:eta:{moved.isoformat()}"
    assert webhook_identity(parse_webhook(track(_written(moved, 0)))) == expected
    assert webhook_identity(parse_webhook(track(_written(moved, 1), original=None))) == expected


def test_an_eta_first_learnt_is_no_change_and_a_stale_update_leaves_the_eta() -> None:
    first = parse_event(parse_webhook(track(_written(ETAS[1], 0))))
    assert first is not None
    state, changes, _ = apply(ShipmentState.empty(), first, NOW)
    assert state.eta == ETAS[1] and ChangeKind.ETA_CHANGED not in {c.kind for c in changes}
    older = replace_latest_date(track(_written(ETAS[3], 0)), days=-1)
    state, changes, _ = apply(state, older, NOW)
    assert state.eta == ETAS[1], "an older scan's estimate is not the newest"
    assert [c.kind for c in changes] == [ChangeKind.HISTORY_ADDED]


def replace_latest_date(raw: bytes, *, days: int) -> Any:
    data = json.loads(raw)
    status = data["data"]["tracking_status"]
    status["object_id"] = "older-scan"
    status["status_date"] = (datetime.fromisoformat(status["status_date"]) + timedelta(days=days)).isoformat()
    data["data"]["tracking_history"] = []
    return parse_event(parse_webhook(json.dumps(data)))


def test_eta_changed_is_stale_once_the_eta_moved_again_or_the_shipment_ended() -> None:
    state = ShipmentState(status=ShipmentStatus.IN_TRANSIT, eta=ETAS[1])
    assert not is_superseded(K.ETA_CHANGED, state, ETAS[1].isoformat())
    assert is_superseded(K.ETA_CHANGED, state, ETAS[2].isoformat())
    delivered = ShipmentState(status=ShipmentStatus.DELIVERED, eta=ETAS[1])
    assert is_superseded(K.ETA_CHANGED, delivered, ETAS[1].isoformat())
