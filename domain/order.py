"""An order's status from its shipments, and its reference from Shippo metadata.

``aggregate_order_status`` checks these rules top to bottom; the first that holds wins.
Refunded shipments (voided labels) are ignored while the order has any other shipment.

======================================  ======================  =========================================
rule                                    order status            why
======================================  ======================  =========================================
cancelled=True                          cancelled               the merchant said so
no shipments                            awaiting_shipment
every shipment refunded                 cancelled               all labels voided: nothing will ship
all delivered                           delivered               (a delivered shipment has no open exception)
all returning or returned               returned                the whole order is going back; checked before
                                                                exceptions because returning always carries
                                                                returned_to_sender
all failed or label_failed              failed                  same: failed always carries its exception
any open exception                      exception               someone has to act (stalled included)
some delivered                          partially_delivered
any out_for_delivery                    out_for_delivery
some moving, some not yet (label_       partially_shipped       moving = in_transit, out_for_delivery,
created / unknown / none)                                       available_for_pickup, returning, returned,
                                                                failed
otherwise (all at least label_created)  shipped                 label_created counts as shipped (the
                                                                customer's "shipped" notice fires then)
======================================  ======================  =========================================

Parcels, for the customer's messages (``domain/policy.py``). The *parcels* of an order are its
shipments but refunded ones (a voided label is a cancelled parcel). A parcel is *on the way* until
it is delivered or ended without delivery (returning, returned, failed, label_failed: the customer
was told about it on its own, ``returned_to_sender`` / ``delivery_failed``). The order is *wholly
delivered* when at least one parcel was delivered and none is on the way: a returned or failed
parcel does not hold the order's ``delivered`` message up, and does not count as delivered.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.vocabulary import ExceptionClass, OrderStatus, ShipmentStatus

S = ShipmentStatus

ShipmentSummary = tuple[ShipmentStatus | None, ExceptionClass | None]

RETURN_STATUSES: frozenset[ShipmentStatus | None] = frozenset({S.RETURNING, S.RETURNED})
FAILED_STATUSES: frozenset[ShipmentStatus | None] = frozenset({S.FAILED, S.LABEL_FAILED})
NOT_MOVING: frozenset[ShipmentStatus | None] = frozenset({None, S.UNKNOWN, S.LABEL_CREATED})


def aggregate_order_status(shipments: Sequence[ShipmentSummary], cancelled: bool = False) -> OrderStatus:
    if cancelled:
        return OrderStatus.CANCELLED
    if not shipments:
        return OrderStatus.AWAITING_SHIPMENT
    live = [(status, exc) for status, exc in shipments if status is not S.REFUNDED]
    if not live:
        return OrderStatus.CANCELLED
    statuses = [status for status, _ in live]
    if all(status is S.DELIVERED for status in statuses):
        return OrderStatus.DELIVERED
    if all(status in RETURN_STATUSES for status in statuses):
        return OrderStatus.RETURNED
    if all(status in FAILED_STATUSES for status in statuses):
        return OrderStatus.FAILED
    if any(exc is not None for _, exc in live):
        return OrderStatus.EXCEPTION
    if any(status is S.DELIVERED for status in statuses):
        return OrderStatus.PARTIALLY_DELIVERED
    if any(status is S.OUT_FOR_DELIVERY for status in statuses):
        return OrderStatus.OUT_FOR_DELIVERY
    waiting = sum(status in NOT_MOVING for status in statuses)
    if 0 < waiting < len(statuses):
        return OrderStatus.PARTIALLY_SHIPPED
    return OrderStatus.SHIPPED


#: Parcels that ended without reaching the customer: they no longer hold the order up.
ENDED_UNDELIVERED: frozenset[ShipmentStatus | None] = frozenset(
    {S.RETURNING, S.RETURNED, S.FAILED, S.LABEL_FAILED}
)


@dataclass(frozen=True, slots=True)
class Parcels:
    """An order's parcels as the notification policy sees them after an update (see the module
    docstring): ``shipments`` counts the order's shipments, refunded ones included (one shipment:
    a single-parcel order, told exactly as before), ``count`` its parcels."""

    shipments: int
    count: int
    delivered: int
    on_the_way: int

    @property
    def several(self) -> bool:
        return self.shipments > 1

    @property
    def wholly_delivered(self) -> bool:
        return self.delivered > 0 and self.on_the_way == 0


def parcels_of(statuses: Sequence[ShipmentStatus | None]) -> Parcels:
    """The :class:`Parcels` of an order whose shipments have ``statuses``."""
    live = [status for status in statuses if status is not S.REFUNDED]
    delivered = sum(status is S.DELIVERED for status in live)
    ended = sum(status in ENDED_UNDELIVERED for status in live)
    return Parcels(len(statuses), len(live), delivered, len(live) - delivered - ended)


class RefMatch(Protocol):
    """What :func:`extract_order_ref` needs of a match: the span of a group."""

    def span(self, group: int = 0, /) -> tuple[int, int]: ...


class RefMatcher(Protocol):
    """A compiled pattern of any engine (``re.Pattern``, an RE2 pattern …): ``search`` and ``groups``.

    The engine is the adapter's choice: merchants' patterns are untrusted, so the worker compiles
    them with a linear-time engine (``workers/order_refs.py``)."""

    @property
    def groups(self) -> int: ...

    def search(self, text: str, /) -> RefMatch | None: ...


MAX_ORDER_REF = 200  # orders.ref is String(200)

#: Categories a reference never holds: controls (NUL, CR, LF, DEL, C1 …), lone surrogates (not
#: UTF-8), line and paragraph separators.
_NOT_IN_REF = frozenset({"Cc", "Cs", "Zl", "Zp"})
_SURROGATE_LOW, _SURROGATE_HIGH = "\ud800", "\udfff"


def order_ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot be an order reference (None when it can): blank, longer than
    :data:`MAX_ORDER_REF` characters, or holding a control character or a lone surrogate."""
    if not ref.strip():
        return "must not be blank"
    if len(ref) > MAX_ORDER_REF:
        return f"must be at most {MAX_ORDER_REF} characters"
    if any(unicodedata.category(ch) in _NOT_IN_REF for ch in ref):
        return "must not contain control characters"
    return None


def _searchable(text: str) -> str:
    """``text`` with lone surrogates replaced one-for-one (so spans still index ``text``): an
    engine working in UTF-8 cannot take them."""
    if not any(_SURROGATE_LOW <= ch <= _SURROGATE_HIGH for ch in text):
        return text
    return "".join("\ufffd" if _SURROGATE_LOW <= ch <= _SURROGATE_HIGH else ch for ch in text)


def extract_order_ref(metadata: str | None, matcher: RefMatcher | None) -> str | None:
    """The order reference in Shippo metadata: group 1 of ``matcher`` (searched), else the whole
    trimmed string. A matcher without groups yields its whole match.

    None when nothing non-blank is found, and also when what is found cannot be an order
    reference (:func:`order_ref_problem`: longer than 200 characters, or holding a control
    character, NUL or a lone surrogate): such an event is treated as carrying no order ref (its
    shipment is tracked, just not joined to an order), never stored truncated or cleaned.
    """
    if metadata is None:
        return None
    text = metadata.strip()
    if not text:
        return None
    if matcher is None:
        found = text
    else:
        match = matcher.search(_searchable(text))
        if match is None:
            return None
        start, end = match.span(1 if matcher.groups >= 1 else 0)
        found = text[start:end].strip() if start >= 0 else ""
    if not found or order_ref_problem(found) is not None:
        return None
    return found
