"""Notification policy: which kinds fire for a set of changes, on which channels, under which key.

Decisions:

* held opens the customer kind ``delayed`` (the parcel is not moving; exception.action says what to do),
  not ``available_for_pickup`` (a parcel held in customs cannot be picked up).
* damaged and contact_carrier have no customer kind: the merchant handles them
  (``exception_action_required`` when Shippo flags action).
* lost / undeliverable / disposed -> ``delivery_failed``.
* Every exception opened with action_required also alerts the merchant (``exception_action_required``),
  except stalled and label_failed which have their own merchant kinds.
* Bursts collapse: of the status changes in one apply only the last fires, and only if it still
  matches the state after; an exception fires only if it is still the open one afterwards.
* ``in_transit`` is dropped when a customer exception kind fires in the same plan (the exception says more).
* ``eta_changed`` (off by default) fires when the estimated delivery moved, on each channel where no
  other customer message of the same plan goes out (that message shows the new eta anyway); its key
  carries the new eta, so each distinct eta is told once; it is stale at send time once the eta moved
  again or the shipment ended.
* Test-mode shipments (Shippo ``test: true``) never reach customers (``suppressed: test_event``)
  unless the merchant's ``notify_test_events`` is on; merchant alerts still go out.
* Merchant alerts always go out by email (to the merchant's alert_email); ``notify`` governs customer kinds.
* Orders of several parcels (``domain/order.py``: parcels, on the way, wholly delivered). A parcel's
  delivery is told as ``partially_delivered`` (on by default) while other parcels are still on the way,
  and not at all when it leaves the order wholly delivered: then ONE order-level ``delivered`` goes
  out, keyed per order and parcel count (``<ref>:order:<n>:delivered:<channel>``, so two parcels'
  last scans processed at once write one row: the unique key decides, not a check). It is planned
  whenever an update that moved a status leaves the order wholly delivered: by the last delivery, or
  by the last parcel on the way ending without delivery (returned, failed) once another was
  delivered. At send time a ``partially_delivered`` is stale once the order is wholly delivered (the
  order-level message says it all), the order-level ``delivered`` once it is not (a new parcel
  joined; the message of the new count goes out when that one arrives). Exceptions stay per parcel.
  An order of one shipment is told exactly as before (per-shipment ``delivered``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.order import Parcels
from domain.shipment import Change, ShipmentState
from domain.vocabulary import (
    CUSTOMER_KINDS,
    Audience,
    ChangeKind,
    Channel,
    ExceptionClass,
    NotificationKind,
    ShipmentStatus,
)

K = NotificationKind
S = ShipmentStatus
X = ExceptionClass

NotifySettings = Mapping[Channel, frozenset[NotificationKind]]

DEFAULT_NOTIFY: NotifySettings = MappingProxyType(
    {
        Channel.EMAIL: frozenset(k for k in CUSTOMER_KINDS if k not in (K.IN_TRANSIT, K.ETA_CHANGED)),
        Channel.SMS: frozenset(
            {
                K.OUT_FOR_DELIVERY,
                K.DELIVERED,
                K.PARTIALLY_DELIVERED,
                K.DELIVERY_ATTEMPTED,
                K.ADDRESS_ISSUE,
                K.AVAILABLE_FOR_PICKUP,
                K.DELIVERY_FAILED,
            }
        ),
    }
)

STATUS_KINDS: Mapping[ShipmentStatus, NotificationKind] = MappingProxyType(
    {
        S.LABEL_CREATED: K.SHIPPED,
        S.IN_TRANSIT: K.IN_TRANSIT,
        S.OUT_FOR_DELIVERY: K.OUT_FOR_DELIVERY,
        S.AVAILABLE_FOR_PICKUP: K.AVAILABLE_FOR_PICKUP,
        S.DELIVERED: K.DELIVERED,
    }
)
# exception class -> the kind its opening fires (customer kind, or the merchant alert for merchant-only classes)
EXCEPTION_KINDS: Mapping[ExceptionClass, NotificationKind | None] = MappingProxyType(
    {
        X.DELIVERY_ATTEMPTED: K.DELIVERY_ATTEMPTED,
        X.ADDRESS_ISSUE: K.ADDRESS_ISSUE,
        X.DELAYED: K.DELAYED,
        X.HELD: K.DELAYED,
        X.RETURNED_TO_SENDER: K.RETURNED_TO_SENDER,
        X.LOST: K.DELIVERY_FAILED,
        X.UNDELIVERABLE: K.DELIVERY_FAILED,
        X.DISPOSED: K.DELIVERY_FAILED,
        X.DAMAGED: None,
        X.CONTACT_CARRIER: None,
        X.STALLED: K.STALLED,
        X.LABEL_FAILED: K.LABEL_FAILED,
    }
)
# classes whose own kind is already a merchant alert: no extra exception_action_required
OWN_ALERT: frozenset[ExceptionClass] = frozenset({X.STALLED, X.LABEL_FAILED})
EXCEPTION_KIND_SET: frozenset[NotificationKind] = frozenset(
    {k for k in EXCEPTION_KINDS.values() if k is not None} | {K.EXCEPTION_ACTION_REQUIRED}
)
# kinds whose key carries the change's occurrence (one message per exception occurrence / per eta)
OCCURRENCE_KINDS: frozenset[NotificationKind] = EXCEPTION_KIND_SET | {K.ETA_CHANGED}
# statuses after which "shipped" is old news
SHIPPED_SUPERSEDED_BY: frozenset[ShipmentStatus] = frozenset(
    {S.DELIVERED, S.RETURNING, S.RETURNED, S.FAILED, S.LABEL_FAILED, S.REFUNDED}
)
# statuses after which a new delivery estimate means nothing to the customer
ETA_SUPERSEDED_BY: frozenset[ShipmentStatus] = SHIPPED_SUPERSEDED_BY


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str | None
    phone: str | None
    email_opt_in: bool
    sms_opt_in: bool


@dataclass(frozen=True, slots=True)
class Intent:
    kind: NotificationKind
    audience: Audience
    channel: Channel
    key: str
    status_at: datetime
    occurrence: str | None
    suppressed: str | None = None  # reason when planned with include_suppressed=True
    order_level: bool = False  # about the whole order (its ``delivered``), not one parcel


def kinds_for_change(change: Change) -> tuple[NotificationKind, ...]:
    """Every kind a change fires, customer kind first."""
    if change.kind is ChangeKind.STATUS_CHANGED and change.to_status is not None:
        kind = STATUS_KINDS.get(change.to_status)
        return (kind,) if kind else ()
    if change.kind is ChangeKind.EXCEPTION_OPENED and change.exception is not None:
        kinds = [k for k in (EXCEPTION_KINDS.get(change.exception),) if k is not None]
        if change.action_required and change.exception not in OWN_ALERT:
            kinds.append(K.EXCEPTION_ACTION_REQUIRED)
        return tuple(kinds)
    if change.kind is ChangeKind.ETA_CHANGED:
        return (K.ETA_CHANGED,)
    return ()


def kind_for_change(change: Change) -> NotificationKind | None:
    kinds = kinds_for_change(change)
    return kinds[0] if kinds else None


def _still_open(change: Change, state: ShipmentState) -> bool:
    return state.exception is not None and state.exception.occurrence == change.occurrence


def _eta_still_true(change: Change, state: ShipmentState) -> bool:
    return not _eta_superseded(state, change.occurrence)


def _eta_superseded(state: ShipmentState, occurrence: str | None) -> bool:
    current = state.eta.isoformat() if state.eta is not None else None
    return current != occurrence or state.status in ETA_SUPERSEDED_BY


def _fired(changes: Sequence[Change], state_after: ShipmentState) -> list[tuple[NotificationKind, Change]]:
    fired: list[tuple[NotificationKind, Change]] = []
    status_changes = [c for c in changes if c.kind is ChangeKind.STATUS_CHANGED]
    for change in changes:
        if change.kind is ChangeKind.EXCEPTION_OPENED and _still_open(change, state_after):
            fired.extend((kind, change) for kind in kinds_for_change(change))
    if status_changes and status_changes[-1].to_status == state_after.status:
        last = status_changes[-1]
        customer_exception = any(kind.audience is Audience.CUSTOMER for kind, _ in fired)
        for kind in kinds_for_change(last):
            if not (kind is K.IN_TRANSIT and customer_exception):
                fired.insert(0, (kind, last))
    eta_changes = [c for c in changes if c.kind is ChangeKind.ETA_CHANGED]
    if eta_changes and _eta_still_true(eta_changes[-1], state_after):
        fired.append((K.ETA_CHANGED, eta_changes[-1]))  # last: plan() drops it where another went out
    return fired


def _channel_verdict(
    kind: NotificationKind, channel: Channel, recipient: Recipient, notify: NotifySettings, test_held: bool
) -> str | None:
    """None when the customer gets `kind` on `channel`, else the suppression reason."""
    if test_held:
        return "test_event"
    if kind not in notify.get(channel, frozenset()):
        return "kind_disabled"
    contact, opted_in = (
        (recipient.email, recipient.email_opt_in)
        if channel is Channel.EMAIL
        else (recipient.phone, recipient.sms_opt_in)
    )
    if not contact:
        return "no_contact"
    if not opted_in:
        return "opted_out"
    return None


def notification_key(
    order_ref: str, shipment_key: str, kind: NotificationKind, channel: Channel, occurrence: str | None
) -> str:
    key = f"{order_ref}:{shipment_key}:{kind.value}:{channel.value}"
    return f"{key}:{occurrence}" if kind in OCCURRENCE_KINDS and occurrence else key


def order_delivered_key(order_ref: str, parcels: int, channel: Channel) -> str:
    """The key of an order's ``delivered``: one per order and parcel count and channel."""
    return f"{order_ref}:order:{parcels}:{K.DELIVERED.value}:{channel.value}"


def _per_parcel(
    fired: list[tuple[NotificationKind, Change]], parcels: Parcels | None
) -> list[tuple[NotificationKind, Change]]:
    """In an order of several parcels a parcel's ``delivered`` becomes ``partially_delivered`` while
    others are on the way, and gives way to the order-level ``delivered`` once none is."""
    if parcels is None or not parcels.several:
        return fired
    if parcels.wholly_delivered:
        return [(kind, change) for kind, change in fired if kind is not K.DELIVERED]
    return [(K.PARTIALLY_DELIVERED if kind is K.DELIVERED else kind, change) for kind, change in fired]


def plan(
    changes: Sequence[Change],
    state_after: ShipmentState,
    recipient: Recipient,
    notify: NotifySettings,
    *,
    order_ref: str,
    shipment_key: str,
    include_suppressed: bool = False,
    notify_test_events: bool = False,
    parcels: Parcels | None = None,
) -> tuple[Intent, ...]:
    """Intents for the changes of one apply (or one stall check), given the state they led to.
    ``notify_test_events``: the merchant lets test-mode shipments reach customers (staging).
    ``parcels``: the shipment's order after the update (None: no order, told as one parcel)."""
    intents: list[Intent] = []
    seen: set[str] = set()
    test_held = state_after.test and not notify_test_events
    told: set[Channel] = set()  # channels a customer message of this plan goes out on
    for kind, change in _per_parcel(_fired(changes, state_after), parcels):
        occurrence = change.occurrence if kind in OCCURRENCE_KINDS else None
        if kind.audience is Audience.MERCHANT:
            targets: list[tuple[Channel, str | None]] = [(Channel.EMAIL, None)]
        else:
            targets = [
                (ch, _channel_verdict(kind, ch, recipient, notify, test_held))
                for ch in Channel
                if not (kind is K.ETA_CHANGED and ch in told)
            ]
            told.update(ch for ch, verdict in targets if verdict is None)
        for channel, verdict in targets:
            if verdict is not None and not include_suppressed:
                continue
            key = notification_key(order_ref, shipment_key, kind, channel, occurrence)
            if key in seen:
                continue
            seen.add(key)
            intents.append(Intent(kind, kind.audience, channel, key, change.at, occurrence, verdict))
    moved = [c for c in changes if c.kind is ChangeKind.STATUS_CHANGED]
    if parcels is not None and parcels.several and parcels.wholly_delivered and moved:
        for channel in Channel:
            verdict = _channel_verdict(K.DELIVERED, channel, recipient, notify, test_held)
            if verdict is not None and not include_suppressed:
                continue
            key = order_delivered_key(order_ref, parcels.count, channel)
            intents.append(
                Intent(K.DELIVERED, Audience.CUSTOMER, channel, key, moved[-1].at, None, verdict, True)
            )
    return tuple(intents)


def is_superseded(kind: NotificationKind, state: ShipmentState, occurrence: str | None = None) -> bool:
    """Re-checked at send time: is `kind` no longer true of the shipment?"""
    if kind is K.NOTIFICATION_FAILED:
        return False
    if kind is K.ETA_CHANGED:
        return _eta_superseded(state, occurrence)
    if kind in EXCEPTION_KIND_SET:
        exc = state.exception
        if exc is None or (occurrence is not None and exc.occurrence != occurrence):
            return True
        if kind is K.EXCEPTION_ACTION_REQUIRED:
            return not exc.action_required
        return EXCEPTION_KINDS.get(exc.cls) is not kind
    if kind is K.SHIPPED:
        return state.status in SHIPPED_SUPERSEDED_BY
    if kind is K.PARTIALLY_DELIVERED:  # the parcel stays delivered; the order: order_superseded
        return state.status is not S.DELIVERED
    if state.status is None:
        return True
    return STATUS_KINDS.get(state.status) is not kind


def order_superseded(kind: NotificationKind, order_level: bool, parcels: Parcels) -> bool:
    """Re-checked at send time against the order's parcels now: a ``partially_delivered`` is old
    news once the order is wholly delivered, the order-level ``delivered`` once it is not."""
    if order_level:
        return not parcels.wholly_delivered
    return kind is K.PARTIALLY_DELIVERED and parcels.wholly_delivered


# --------------------------------------------------------------------------- quiet hours

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")  # whole string: fullmatch


def parse_quiet_hours(window: str) -> tuple[time, time]:
    """'21:00-08:00' -> (21:00, 08:00). ValueError when malformed or empty (start == end)."""
    match = _WINDOW.fullmatch(window or "")
    if match is None:
        raise ValueError(f"quiet hours must look like 21:00-08:00, got {window!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"quiet hours has an invalid time: {window!r}")
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise ValueError(f"quiet hours start and end must differ: {window!r}")
    return start, end


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def quiet_hours_end(now: datetime, window: str | None, tz: str) -> datetime | None:
    """When the quiet window containing `now` ends (UTC), or None when `now` is not in quiet hours."""
    if not window:
        return None
    start, end = parse_quiet_hours(window)
    zone = _zone(tz)
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    local = aware.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        inside = start <= clock < end
        end_day = today
    else:  # wraps midnight
        inside = clock >= start or clock < end
        end_day = today + timedelta(days=1) if clock >= start else today
    if not inside:
        return None
    ends = datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
    return ends if ends > aware else None


__all__ = [
    "DEFAULT_NOTIFY",
    "Intent",
    "NotifySettings",
    "Recipient",
    "is_superseded",
    "kind_for_change",
    "kinds_for_change",
    "notification_key",
    "order_delivered_key",
    "order_superseded",
    "parse_quiet_hours",
    "plan",
    "quiet_hours_end",
]
