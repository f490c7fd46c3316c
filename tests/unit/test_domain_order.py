"""Order status from its shipments; order reference from Shippo metadata."""

from __future__ import annotations

import re

import pytest

from domain.order import aggregate_order_status, extract_order_ref
from domain.vocabulary import ExceptionClass, OrderStatus, ShipmentStatus

S = ShipmentStatus
X = ExceptionClass
O = OrderStatus  # noqa: E741 - a table alias, read as "Order"


@pytest.mark.parametrize(
    ("shipments", "expected"),
    [
        ([], O.AWAITING_SHIPMENT),
        ([(S.LABEL_CREATED, None)], O.SHIPPED),
        ([(None, None)], O.SHIPPED),
        ([(S.IN_TRANSIT, None), (S.LABEL_CREATED, None)], O.PARTIALLY_SHIPPED),
        ([(S.IN_TRANSIT, None), (S.IN_TRANSIT, None)], O.SHIPPED),
        ([(S.OUT_FOR_DELIVERY, None), (S.IN_TRANSIT, None)], O.OUT_FOR_DELIVERY),
        ([(S.DELIVERED, None), (S.IN_TRANSIT, None)], O.PARTIALLY_DELIVERED),
        ([(S.DELIVERED, None), (S.OUT_FOR_DELIVERY, None)], O.PARTIALLY_DELIVERED),
        ([(S.DELIVERED, None), (S.DELIVERED, None)], O.DELIVERED),
        ([(S.DELIVERED, None), (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED)], O.EXCEPTION),
        ([(S.IN_TRANSIT, X.STALLED)], O.EXCEPTION),
        ([(S.RETURNING, X.RETURNED_TO_SENDER)], O.RETURNED),
        ([(S.RETURNED, None), (S.RETURNING, X.RETURNED_TO_SENDER)], O.RETURNED),
        ([(S.FAILED, X.LOST), (S.LABEL_FAILED, X.LABEL_FAILED)], O.FAILED),
        ([(S.FAILED, X.LOST), (S.DELIVERED, None)], O.EXCEPTION),
        ([(S.REFUNDED, None)], O.CANCELLED),
        ([(S.REFUNDED, None), (S.DELIVERED, None)], O.DELIVERED),
        ([(S.REFUNDED, None), (S.LABEL_CREATED, None)], O.SHIPPED),
    ],
)
def test_an_order_aggregates_its_shipments(
    shipments: list[tuple[ShipmentStatus | None, ExceptionClass | None]], expected: OrderStatus
) -> None:
    assert aggregate_order_status(shipments) is expected


def test_a_cancelled_order_is_cancelled_whatever_its_shipments_say() -> None:
    assert aggregate_order_status([(S.IN_TRANSIT, None)], cancelled=True) is O.CANCELLED


@pytest.mark.parametrize(
    ("metadata", "pattern", "expected"),
    [
        ("Order 1001", None, "Order 1001"),
        ("  Order 1001  ", "", "Order 1001"),
        ("Order 1001", r"Order\s+(\d+)", "1001"),
        ("ref=#A-77; gift", r"#([A-Z]-\d+)", "A-77"),
        ("Order 1001", r"\d+", "1001"),
        ("no number here", r"Order\s+(\d+)", None),
        ("", None, None),
        ("   ", r"(\d+)", None),
        (None, r"(\d+)", None),
        ("Order  ", r"Order(\s*)", None),
    ],
)
def test_the_order_ref_is_group_one_of_the_merchant_pattern_or_the_trimmed_metadata(
    metadata: str | None, pattern: str | None, expected: str | None
) -> None:
    assert extract_order_ref(metadata, re.compile(pattern) if pattern else None) == expected
