"""Tolerant model of Shippo webhook bodies.

Two steps, so the receiver can answer fast and the worker can be thorough:

* ``parse_webhook`` checks the SHAPE of a body (what the receiver needs to say
  400 or not) and returns a ``Webhook``;
* ``parse_event`` turns an acted-on ``Webhook`` into a typed ``TrackUpdate`` or
  ``LabelUpdate`` (the worker);
* ``check_event`` raises exactly the ``PayloadError`` that ``parse_event`` would raise, without
  building the event (the receiver, before its 200): only identifiers and timestamps can refuse
  an event — free text is cleaned, never refused, and a bad history entry is skipped — so it
  reads those and nothing else, and the worker's ``parse_event`` does the cleaning.

Unknown keys are accepted everywhere. Shippo's test-mode quirks are handled
here (null ``substatus``, null ``object_updated``, naive timestamps, null
``transaction``, top-level ``metadata``, a string ``data`` for batch events).
Every error is a ``PayloadError`` whose message names the problem precisely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from domain.fields import (
    CARRIER_HOSTS,
    PayloadError,
    as_text,
    canonical_json,
    carrier_from_url,
    flag,
    free_text,
    identifier,
    lenient_timestamp,
    messages,
    opt_identifier,
    opt_text,
    parse_timestamp,
    reference,
    require_identifier,
    sha256,
    strict_json,
    timestamp,
    url_text,
)
from domain.vocabulary import EventName

__all__ = [
    "ACTED_ON",
    "CARRIER_HOSTS",
    "LabelUpdate",
    "Location",
    "PayloadError",
    "Scan",
    "TrackUpdate",
    "Webhook",
    "canonical_json",
    "carrier_from_url",
    "check_event",
    "is_acted_on",
    "is_test",
    "parse_event",
    "parse_timestamp",
    "parse_webhook",
    "stored_timestamp",
    "webhook_identity",
]


ACTED_ON: frozenset[str] = frozenset(
    {EventName.TRANSACTION_CREATED, EventName.TRANSACTION_UPDATED, EventName.TRACK_UPDATED}
)
TRANSACTION_EVENTS: frozenset[str] = frozenset({EventName.TRANSACTION_CREATED, EventName.TRANSACTION_UPDATED})

MAX_IDENTITY_LEN = 200
DERIVED_SCAN_ID = "sha256:"  # + digest, cut to fit shipment_scans.scan_id (64) when Shippo sent no id

# --------------------------------------------------------------------------- the envelope


@dataclass(frozen=True, slots=True)
class Webhook:
    event: str
    test: bool
    data: Any
    metadata: str | None


def parse_webhook(raw: bytes | str) -> Webhook:
    """Validate the shape of a webhook body; raise PayloadError naming the problem."""
    body = strict_json(raw)
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object")
    if "event" not in body:
        raise PayloadError("missing field 'event'")
    event = body["event"]
    if not isinstance(event, str) or not event.strip():
        raise PayloadError("'event' must be a non-empty string")
    identifier(event, "event", "event")
    if "data" not in body:
        raise PayloadError("missing field 'data'")
    data = body["data"]
    if event == EventName.TRACK_UPDATED:
        _check_track_shape(data)
    elif event in TRANSACTION_EVENTS:
        _check_transaction_shape(event, data)
    return Webhook(
        event=event,
        test=flag(body.get("test")),
        data=data,
        metadata=free_text(body.get("metadata"), "metadata"),
    )


def _check_track_shape(data: Any) -> None:
    if not isinstance(data, dict):
        raise PayloadError("'data' of track_updated must be an object")
    for name in ("carrier", "tracking_number"):
        require_identifier(data, name, name)
    if "tracking_status" not in data:
        raise PayloadError("'data.tracking_status' is missing")
    if not isinstance(data["tracking_status"], dict):
        raise PayloadError("'data.tracking_status' must be an object")
    reference(data.get("transaction"), "data.transaction")


def _check_transaction_shape(event: str, data: Any) -> None:
    if not isinstance(data, dict):
        raise PayloadError(f"'data' of {event} must be an object")
    require_identifier(data, "object_id", "transaction")
    require_identifier(data, "status", "status")


def is_acted_on(w: Webhook) -> bool:
    return w.event in ACTED_ON


def is_test(w: Webhook) -> bool:
    """A Shippo test-mode event: ``test`` on the envelope or on its data (Shippo sets both)."""
    return w.test or (isinstance(w.data, dict) and flag(w.data.get("test")))


def moved_eta(data: Mapping[str, Any]) -> datetime | None:
    """The track's ``eta`` when it says the estimate moved (differs from ``original_eta``, or
    there is no original to differ from); None when it did not move or is unknown."""
    eta = lenient_timestamp(data.get("eta"))
    if eta is None or eta == lenient_timestamp(data.get("original_eta")):
        return None
    return eta


def webhook_identity(w: Webhook) -> str:
    """Content identity of a webhook: equal for Shippo retries and duplicate registrations.

    A track is its latest scan — plus, only when the estimate moved (``moved_eta``), that eta:
    the same scan with a new eta is a new event, while a track whose eta did not move keeps the
    identity it always had (retries across a deploy still dedupe)."""
    data = w.data if isinstance(w.data, dict) else {}
    if w.event == EventName.TRACK_UPDATED:
        status = data.get("tracking_status")
        status = status if isinstance(status, dict) else {}
        scan_id = status.get("object_id")
        if not isinstance(scan_id, str) or not scan_id:
            scan_id = sha256(canonical_json(status))
        identity = (
            f"track:{as_text(data.get('carrier')).lower()}:{as_text(data.get('tracking_number'))}:{scan_id}"
        )
        eta = moved_eta(data)
        if eta is not None:
            identity += f":eta:{eta.isoformat()}"
        prefix = "track"
    elif w.event in TRANSACTION_EVENTS:
        stamp = as_text(data.get("object_updated")) or as_text(data.get("object_created"))
        identity = f"txn:{as_text(data.get('object_id'))}:{as_text(data.get('status')).upper()}:{stamp}"
        prefix = "txn"
    else:
        body = {"event": w.event, "test": w.test, "data": w.data, "metadata": w.metadata}
        identity = f"{w.event}:{sha256(canonical_json(body))}"
        prefix = w.event[:40]
    if len(identity) > MAX_IDENTITY_LEN:
        identity = f"{prefix}:{sha256(identity)}"
    return identity


# --------------------------------------------------------------------------- values


def stored_timestamp(d: Mapping[str, Any], key: str) -> datetime:
    """A required timestamp of a stored record (the ``from_dict`` of the value objects)."""
    moment = parse_timestamp(d[key])
    if moment is None:
        raise PayloadError(f"'{key}' is missing")
    return moment


@dataclass(frozen=True, slots=True)
class Location:
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""

    def label(self) -> str:
        """'Las Vegas, NV', 'Paris, FR'; '' when nothing is known."""
        region = self.state or self.country
        return ", ".join(part for part in (self.city, region) if part)

    def to_dict(self) -> dict[str, str]:
        return {"city": self.city, "state": self.state, "zip": self.zip, "country": self.country}


@dataclass(frozen=True, slots=True)
class Scan:
    object_id: str
    status: str
    substatus_code: str | None
    substatus_text: str | None
    action_required: bool | None
    details: str
    status_date: datetime
    created: datetime | None
    location: Location | None

    def sort_key(self) -> tuple[datetime, datetime, str]:
        return (self.status_date, self.created or self.status_date, self.object_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "status": self.status,
            "substatus_code": self.substatus_code,
            "substatus_text": self.substatus_text,
            "action_required": self.action_required,
            "details": self.details,
            "status_date": self.status_date.isoformat(),
            "created": self.created.isoformat() if self.created else None,
            "location": self.location.to_dict() if self.location else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scan:
        return cls(
            object_id=str(d["object_id"]),
            status=str(d["status"]),
            substatus_code=d.get("substatus_code"),
            substatus_text=d.get("substatus_text"),
            action_required=d.get("action_required"),
            details=str(d.get("details") or ""),
            status_date=stored_timestamp(d, "status_date"),
            created=parse_timestamp(d.get("created")),
            location=_location(d.get("location")),
        )


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    carrier: str
    tracking_number: str
    transaction_id: str | None
    metadata: str | None
    eta: datetime | None
    latest: Scan
    history: tuple[Scan, ...]
    test: bool

    def scans(self) -> tuple[Scan, ...]:
        """latest + history, one per scan id, in time order (status_date, then object_created)."""
        unique: dict[str, Scan] = {}
        for scan in (*self.history, self.latest):
            unique.setdefault(scan.object_id, scan)
        return tuple(sorted(unique.values(), key=Scan.sort_key))


@dataclass(frozen=True, slots=True)
class LabelUpdate:
    object_id: str
    status: str
    tracking_number: str | None
    carrier: str | None
    tracking_url_provider: str | None
    label_url: str | None
    eta: datetime | None
    metadata: str | None
    messages: tuple[str, ...]
    created: datetime | None
    updated: datetime | None
    test: bool

    @property
    def event_time(self) -> datetime | None:
        return self.updated or self.created

    @property
    def event_id(self) -> str:
        """Id of this label event in ShipmentState.applied (status included: SUCCESS then REFUNDED both apply)."""
        stamp = self.event_time.isoformat() if self.event_time else ""
        return f"label:{self.object_id}:{self.status}:{stamp}"


# --------------------------------------------------------------------------- parsing


def parse_event(w: Webhook) -> TrackUpdate | LabelUpdate | None:
    """The typed event of an acted-on webhook; None for events not acted on."""
    if w.event == EventName.TRACK_UPDATED:
        return _track(w)
    if w.event in TRANSACTION_EVENTS:
        return _label(w)
    return None


def check_event(w: Webhook) -> None:
    """Raise the ``PayloadError`` ``parse_event(w)`` would raise, and nothing when it would not."""
    if w.event == EventName.TRACK_UPDATED:
        _check_track_shape(w.data)
        _scan_keys(w.data["tracking_status"], "data.tracking_status")
    elif w.event in TRANSACTION_EVENTS:
        _check_transaction_shape(w.event, w.data)
        _label_keys(w.data)


def _track(w: Webhook) -> TrackUpdate:
    _check_track_shape(w.data)
    data: dict[str, Any] = w.data
    latest = _scan(data["tracking_status"], "data.tracking_status")
    raw_history = data.get("tracking_history")
    history: list[Scan] = []
    if isinstance(raw_history, list):
        for index, item in enumerate(raw_history):
            # A malformed history entry is skipped rather than losing the whole update.
            try:
                history.append(_scan(item, f"data.tracking_history[{index}]"))
            except PayloadError:
                continue
    return TrackUpdate(
        carrier=require_identifier(data, "carrier", "carrier").lower(),
        tracking_number=require_identifier(data, "tracking_number", "tracking_number"),
        transaction_id=reference(data.get("transaction"), "data.transaction"),
        metadata=free_text(data.get("metadata"), "metadata"),
        eta=lenient_timestamp(data.get("eta")),
        latest=latest,
        history=tuple(history),
        test=is_test(w),
    )


class _ScanKeys(NamedTuple):
    """What can refuse a scan: its identifiers and timestamps, read and checked."""

    object_id: str
    status: str
    substatus_code: str | None
    status_date: datetime
    created: datetime | None
    substatus: dict[str, Any]


def _scan_keys(raw: Any, where: str) -> _ScanKeys:
    if not isinstance(raw, dict):
        raise PayloadError(f"'{where}' must be an object")
    created = timestamp(raw, "object_created", where)
    status_date = timestamp(raw, "status_date", where) or created
    if status_date is None:
        raise PayloadError(f"'{where}.status_date' is missing")
    object_id = raw.get("object_id")
    if not isinstance(object_id, str) or not object_id:
        object_id = DERIVED_SCAN_ID + sha256(canonical_json(raw))[: 64 - len(DERIVED_SCAN_ID)]
    sub = raw.get("substatus")
    sub = sub if isinstance(sub, dict) else {}
    code = opt_identifier(sub.get("code"), f"{where}.substatus.code", "substatus")
    status = opt_identifier(raw.get("status"), f"{where}.status", "status")
    return _ScanKeys(
        object_id=identifier(object_id, f"{where}.object_id", "scan_id"),
        status=(status or "UNKNOWN").upper(),
        substatus_code=code.lower() if code else None,
        status_date=status_date,
        created=created,
        substatus=sub,
    )


def _scan(raw: Any, where: str) -> Scan:
    keys = _scan_keys(raw, where)
    action = keys.substatus.get("action_required")
    return Scan(
        object_id=keys.object_id,
        status=keys.status,
        substatus_code=keys.substatus_code,
        substatus_text=free_text(keys.substatus.get("text"), "substatus_text"),
        action_required=action if isinstance(action, bool) else None,
        details=free_text(raw.get("status_details"), "details") or "",
        status_date=keys.status_date,
        created=keys.created,
        location=_location(raw.get("location")),
    )


class _LabelKeys(NamedTuple):
    """What can refuse a label event beyond its shape: identifiers and timestamps."""

    tracking_number: str | None
    rate_carrier: str | None
    created: datetime | None
    updated: datetime | None


def _label_keys(data: dict[str, Any]) -> _LabelKeys:
    return _LabelKeys(
        tracking_number=opt_identifier(
            data.get("tracking_number"), "data.tracking_number", "tracking_number"
        ),
        rate_carrier=_rate_carrier(data.get("rate")),
        created=timestamp(data, "object_created", "data"),
        updated=timestamp(data, "object_updated", "data"),
    )


def _label(w: Webhook) -> LabelUpdate:
    _check_transaction_shape(w.event, w.data)
    data: dict[str, Any] = w.data
    keys = _label_keys(data)
    url = url_text(data.get("tracking_url_provider"))
    return LabelUpdate(
        object_id=require_identifier(data, "object_id", "transaction"),
        status=require_identifier(data, "status", "status").upper(),
        tracking_number=keys.tracking_number,
        carrier=keys.rate_carrier or carrier_from_url(url),
        tracking_url_provider=url,
        label_url=url_text(data.get("label_url")),
        eta=lenient_timestamp(data.get("eta")),
        metadata=free_text(data.get("metadata"), "metadata") or w.metadata,
        messages=messages(data.get("messages")),
        created=keys.created,
        updated=keys.updated,
        test=is_test(w),
    )


def _rate_carrier(rate: Any) -> str | None:
    if not isinstance(rate, dict):
        return None
    provider = opt_text(rate.get("provider"))
    if provider is None:
        return None
    return identifier(provider.lower().replace(" ", "_").replace("-", "_"), "data.rate.provider", "carrier")


def _location(raw: Any) -> Location | None:
    if not isinstance(raw, dict):
        return None
    return Location(
        city=free_text(raw.get("city"), "city") or "",
        state=free_text(raw.get("state"), "region") or "",
        zip=free_text(raw.get("zip"), "region") or "",
        country=free_text(raw.get("country"), "region") or "",
    )
