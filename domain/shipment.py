"""Shipment state machine: apply Shippo events (in any order, any number of times) to a shipment.

Rules:

* Scans are processed in time order (status_date, then object_created). A TrackUpdate carries the
  whole history, so every unseen scan of it is merged: lost webhooks are filled in.
* Every scan id / label event id is applied once (``ShipmentState.applied``): a duplicate is a no-op.
* A scan older than the latest applied status-moving event (``last_event_at``) is history only.
* A newer scan moves the status only forward or sideways in PROGRESS_RANK, never back: a terminal
  state holds against stale events, but a genuinely newer one may move on (delivered -> returning).
* A DELIVERED scan while returning means the parcel is back with the sender: status ``returned``.
* An exception opens on an exception scan (once per occurrence = scan id); another class replaces it
  (cleared + opened); the same class while open is the same problem (no new occurrence); a newer
  non-exception scan that moves status forward or sideways clears it.
* A scan that classifies as ``unknown`` never replaces a known status.
* The eta follows the newest scan's report (an update for an older scan leaves it). When it moves
  from a known eta to another, the update says so (``eta_changed``, occurrence: the new eta), even
  with no new scan; an eta first learnt is no change.
* A shipment is ``test`` once any of its events was a Shippo test-mode event.
* Label events: SUCCESS fills tracking number/url/label and sets label_created only while the status is
  None/unknown (or, newer, label_failed): a late transaction webhook never regresses a moving
  shipment. ERROR -> label_failed + label_failed exception; REFUNDED/REFUNDPENDING -> refunded; both
  only while the shipment has not started moving.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from domain.normalization import classify_label, classify_scan
from domain.payload import LabelUpdate, Scan, TrackUpdate, parse_timestamp, stored_timestamp
from domain.vocabulary import ChangeKind, ExceptionClass, ShipmentStatus

S = ShipmentStatus

PROGRESS_RANK: Mapping[ShipmentStatus, int] = MappingProxyType(
    {
        S.UNKNOWN: 0,
        S.LABEL_CREATED: 1,
        S.LABEL_FAILED: 1,
        S.REFUNDED: 1,
        S.IN_TRANSIT: 2,
        S.OUT_FOR_DELIVERY: 2,
        S.AVAILABLE_FOR_PICKUP: 2,
        S.DELIVERED: 3,
        S.RETURNING: 4,
        S.FAILED: 4,
        S.RETURNED: 5,
    }
)
TERMINAL: frozenset[ShipmentStatus] = frozenset({S.DELIVERED, S.RETURNED, S.FAILED, S.REFUNDED})
# statuses a label event may still move (the shipment has not started moving)
LABEL_STAGE: frozenset[ShipmentStatus | None] = frozenset({None, S.UNKNOWN, S.LABEL_CREATED, S.LABEL_FAILED})
# (current status, classified status) -> status actually reached
STATUS_REWRITES: Mapping[tuple[ShipmentStatus | None, ShipmentStatus], ShipmentStatus] = MappingProxyType(
    {(S.RETURNING, S.DELIVERED): S.RETURNED, (S.RETURNED, S.DELIVERED): S.RETURNED}
)


def is_terminal(status: ShipmentStatus | str | None) -> bool:
    return status is not None and status in TERMINAL


def progress_rank(status: ShipmentStatus | str | None) -> int:
    """-1 before anything, then PROGRESS_RANK."""
    if status is None:
        return -1
    return PROGRESS_RANK.get(ShipmentStatus(status), 0)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True, slots=True)
class OpenException:
    cls: ExceptionClass
    action_required: bool
    since: datetime
    detail: str
    occurrence: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpenException:
        return cls(
            cls=ExceptionClass(d["class"]),
            action_required=bool(d["action_required"]),
            since=stored_timestamp(d, "since"),
            detail=str(d.get("detail") or ""),
            occurrence=str(d["occurrence"]),
        )

    def to_contract(self) -> dict[str, Any]:
        """The exception as the API shows it: all but ``occurrence`` (the scan that opened it)."""
        return {
            "class": self.cls.value,
            "action_required": self.action_required,
            "since": self.since.isoformat(),
            "detail": self.detail,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_contract(), "occurrence": self.occurrence}


@dataclass(frozen=True, slots=True)
class ShipmentState:
    carrier: str | None = None
    tracking_number: str | None = None
    transaction_id: str | None = None
    tracking_url_provider: str | None = None
    label_url: str | None = None
    status: ShipmentStatus | None = None
    substatus: str | None = None
    exception: OpenException | None = None
    last_event_at: datetime | None = None
    last_scan_at: datetime | None = None
    eta: datetime | None = None
    last_location: str = ""
    applied: frozenset[str] = field(default_factory=frozenset)
    metadata: str | None = None
    test: bool = False

    @classmethod
    def empty(cls) -> ShipmentState:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON (the shipment row's ``state``), in declaration order: see :data:`_JSON`."""
        return {f.name: _JSON.get(f.name, _PLAIN)[0](getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShipmentState:
        """Back from :meth:`to_dict` (a missing key reads as ``None``)."""
        return cls(**{f.name: _JSON.get(f.name, _PLAIN)[1](d.get(f.name)) for f in fields(cls)})


def _same(value: Any) -> Any:
    return value


_PLAIN = (_same, _same)
# ShipmentState's fields whose JSON is not the value itself: field -> (to JSON, from JSON).
_JSON: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = MappingProxyType(
    {
        "status": (lambda s: s.value if s else None, lambda v: ShipmentStatus(v) if v else None),
        "exception": (
            lambda e: e.to_dict() if e else None,
            lambda v: OpenException.from_dict(v) if v else None,
        ),
        "last_event_at": (_iso, parse_timestamp),
        "last_scan_at": (_iso, parse_timestamp),
        "eta": (_iso, parse_timestamp),
        "last_location": (_same, lambda v: str(v or "")),
        "applied": (sorted, lambda v: frozenset(v or ())),
        "test": (_same, lambda v: v is True),
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    at: datetime
    from_status: ShipmentStatus | None
    to_status: ShipmentStatus | None
    exception: ExceptionClass | None = None
    occurrence: str | None = None
    detail: str = ""
    scan_id: str | None = None
    action_required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "at": self.at.isoformat(),
            "from_status": self.from_status.value if self.from_status else None,
            "to_status": self.to_status.value if self.to_status else None,
            "exception": self.exception.value if self.exception else None,
            "occurrence": self.occurrence,
            "detail": self.detail,
            "scan_id": self.scan_id,
            "action_required": self.action_required,
        }


Applied = tuple[ShipmentState, tuple[Change, ...], tuple[Scan, ...]]
Moved = tuple[ShipmentState, tuple[Change, ...]]


def apply(state: ShipmentState, event: TrackUpdate | LabelUpdate, now: datetime) -> Applied:
    """New state, what changed, and the scans new to the history. Pure; idempotent per event."""
    if isinstance(event, TrackUpdate):
        return _apply_track(state, event)
    new_state, changes = _apply_label(state, event, now)
    return new_state, changes, ()


# --------------------------------------------------------------------------- tracks


def _apply_track(state: ShipmentState, ev: TrackUpdate) -> Applied:
    s = replace(
        state,
        carrier=state.carrier or ev.carrier,
        tracking_number=state.tracking_number or ev.tracking_number,
        transaction_id=state.transaction_id or ev.transaction_id,
        metadata=state.metadata or ev.metadata,
        test=state.test or ev.test,
    )
    moved_eta: datetime | None = None
    if ev.eta is not None and (s.last_scan_at is None or ev.latest.status_date >= s.last_scan_at):
        moved_eta = ev.eta if s.eta is not None and ev.eta != s.eta else None
        s = replace(s, eta=ev.eta)
    fresh = tuple(scan for scan in ev.scans() if scan.object_id not in s.applied)
    changes: list[Change] = []
    for scan in fresh:
        s = _record(s, scan)
        changes.append(
            Change(
                ChangeKind.HISTORY_ADDED,
                scan.status_date,
                s.status,
                s.status,
                scan_id=scan.object_id,
                detail=scan.details,
            )
        )
        s, moved = _move(s, scan)
        changes.extend(moved)
    if moved_eta is not None:
        changes.append(
            Change(
                ChangeKind.ETA_CHANGED,
                ev.latest.status_date,
                s.status,
                s.status,
                occurrence=moved_eta.isoformat(),
                detail=moved_eta.isoformat(),
            )
        )
    return s, tuple(changes), fresh


def _record(s: ShipmentState, scan: Scan) -> ShipmentState:
    """History bookkeeping every new scan gets, stale or not."""
    s = replace(s, applied=s.applied | {scan.object_id})
    if s.last_scan_at is None or scan.status_date >= s.last_scan_at:
        label = scan.location.label() if scan.location else ""
        s = replace(s, last_scan_at=scan.status_date, last_location=label or s.last_location)
    return s


def _move(s: ShipmentState, scan: Scan) -> Moved:
    if s.last_event_at is not None and scan.status_date < s.last_event_at:
        return s, ()  # stale: history only
    c = classify_scan(scan.status, scan.substatus_code, scan.action_required)
    current = s.status
    target = STATUS_REWRITES.get((current, c.status), c.status)
    if target is S.UNKNOWN and current is not None:
        if c.exception is None:
            return s, ()  # says nothing new
        target = current
    if progress_rank(target) < progress_rank(current):
        return s, ()  # would regress
    detail = scan.substatus_text or scan.details or c.customer_action
    s, changes = _transition(
        s,
        target,
        at=scan.status_date,
        opens=c.exception,
        action_required=c.action_required,
        occurrence=scan.object_id,
        detail=detail,
        clears=c.status is not S.UNKNOWN,
    )
    return replace(s, substatus=scan.substatus_code), changes


# --------------------------------------------------------------------------- labels


def _apply_label(s: ShipmentState, ev: LabelUpdate, now: datetime) -> Moved:
    event_id = ev.event_id
    if event_id in s.applied:
        return s, ()
    s = replace(
        s,
        applied=s.applied | {event_id},
        tracking_number=s.tracking_number or ev.tracking_number,
        carrier=s.carrier or ev.carrier,
        transaction_id=s.transaction_id or ev.object_id,
        tracking_url_provider=ev.tracking_url_provider or s.tracking_url_provider,
        label_url=ev.label_url or s.label_url,
        eta=s.eta or ev.eta,
        metadata=s.metadata or ev.metadata,
        test=s.test or ev.test,
    )
    c = classify_label(ev.status, ev.messages)
    if c is None or s.status not in LABEL_STAGE or c.status == s.status:
        return s, ()
    at = ev.event_time or now
    stale = s.last_event_at is not None and at < s.last_event_at
    if stale and (s.status not in (None, S.UNKNOWN) or c.exception is not None):
        return s, ()
    # A stale label may still lift an unknown status, but it says nothing about newer problems.
    return _transition(
        s,
        c.status,
        at=at,
        opens=c.exception,
        action_required=c.action_required,
        occurrence=event_id,
        detail=c.detail,
        clears=not stale,
    )


# --------------------------------------------------------------------------- shared transition


def _transition(
    s: ShipmentState,
    target: ShipmentStatus,
    *,
    at: datetime,
    opens: ExceptionClass | None,
    action_required: bool,
    occurrence: str,
    detail: str,
    clears: bool,
) -> Moved:
    """Move to target at `at`, opening/replacing/clearing the exception as the event says."""
    current = s.status
    changes: list[Change] = []
    if target != current:
        changes.append(
            Change(ChangeKind.STATUS_CHANGED, at, current, target, scan_id=occurrence, detail=detail)
        )
    old = s.exception
    exception = old
    if old is not None and (opens is not None and opens != old.cls or opens is None and clears):
        changes.append(
            Change(
                ChangeKind.EXCEPTION_CLEARED,
                at,
                current,
                target,
                old.cls,
                old.occurrence,
                old.detail,
                occurrence,
            )
        )
        exception = None
    if opens is not None and exception is None:
        exception = OpenException(opens, action_required, at, detail, occurrence)
        changes.append(
            Change(
                ChangeKind.EXCEPTION_OPENED,
                at,
                current,
                target,
                opens,
                occurrence,
                detail,
                occurrence,
                action_required,
            )
        )
    last = at if s.last_event_at is None else max(at, s.last_event_at)
    return replace(s, status=target, exception=exception, last_event_at=last), tuple(changes)


# --------------------------------------------------------------------------- stalls


def detect_stall(state: ShipmentState, now: datetime, stall_after: timedelta) -> Moved:
    """Open `stalled` on a non-terminal shipment with no exception and no scan for longer than stall_after."""
    if state.status is None or is_terminal(state.status) or state.exception is not None:
        return state, ()
    reference = state.last_scan_at or state.last_event_at
    if reference is None or now - reference <= stall_after:
        return state, ()
    occurrence = f"stalled:{reference.isoformat()}"
    if occurrence in state.applied:
        return state, ()
    detail = f"no carrier scan since {reference.isoformat()}"
    exception = OpenException(ExceptionClass.STALLED, True, now, detail, occurrence)
    change = Change(
        ChangeKind.EXCEPTION_OPENED,
        now,
        state.status,
        state.status,
        ExceptionClass.STALLED,
        occurrence,
        detail,
        None,
        True,
    )
    return replace(state, exception=exception, applied=state.applied | {occurrence}), (change,)
