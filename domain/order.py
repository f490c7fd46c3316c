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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

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


@lru_cache(maxsize=256)
def compile_order_ref_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a merchant's order_ref_pattern; ValueError when it is not a valid regex."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid order_ref_pattern: {exc}") from None


def extract_order_ref(metadata: str | None, pattern: str | None) -> str | None:
    """The order reference in Shippo metadata: group 1 of `pattern` (searched), else the whole trimmed string.

    A pattern without groups yields its whole match. None when nothing (non-blank) is found.
    """
    if metadata is None:
        return None
    text = metadata.strip()
    if not text:
        return None
    if not pattern:
        return text
    match = compile_order_ref_pattern(pattern).search(text)
    if match is None:
        return None
    found = match.group(1) if match.re.groups >= 1 else match.group(0)
    found = (found or "").strip()
    return found or None
