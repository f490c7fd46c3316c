"""Normalization tables: every Shippo code is mapped, unknowns fall back, nothing crashes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.normalization import (
    ACTION_REQUIRED_CODES,
    CUSTOMER_ACTIONS,
    MERCHANT_ACTIONS,
    STATUS_FALLBACK,
    SUBSTATUS_TABLE,
    TRANSACTION_STATUSES,
    classify_label,
    classify_scan,
    exception_action,
)
from domain.vocabulary import ExceptionClass, ShipmentStatus

S = ShipmentStatus
X = ExceptionClass
CSV = Path(__file__).resolve().parents[2] / "domain" / "substatus.csv"
ROWS = list(csv.DictReader(CSV.open()))


def test_the_csv_has_the_27_known_codes_and_the_table_maps_exactly_those() -> None:
    assert len(ROWS) == 27
    assert {row["code"] for row in ROWS} == set(SUBSTATUS_TABLE)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["code"])
def test_every_substatus_code_is_classified_and_keeps_shippos_action_flag(row: dict[str, str]) -> None:
    flagged = row["action_required"] == "true"
    result = classify_scan(row["status"], row["code"], flagged)
    assert result.action_required is flagged
    assert (row["code"] in ACTION_REQUIRED_CODES) is flagged
    # the row's status family agrees with Shippo's status column
    family = STATUS_FALLBACK[row["status"]][0]
    assert result.status == family or (family, result.status) in {
        (S.IN_TRANSIT, S.OUT_FOR_DELIVERY),
        (S.IN_TRANSIT, S.AVAILABLE_FOR_PICKUP),
    }
    if result.exception is not None:
        assert result.customer_action and result.merchant_action


#: What each substatus code means, by meaning: (status, exception) → the codes.
TABLE_CHOICES: dict[tuple[S, X | None], tuple[str, ...]] = {
    (S.LABEL_CREATED, None): ("information_received",),
    (S.IN_TRANSIT, None): ("package_accepted", "delivery_scheduled", "delivery_rescheduled"),
    (S.OUT_FOR_DELIVERY, None): ("out_for_delivery",),
    (S.AVAILABLE_FOR_PICKUP, None): ("pickup_available",),
    (S.IN_TRANSIT, X.HELD): ("package_held",),
    (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED): (
        "delivery_attempted",
        "notice_left",
        "reschedule_delivery",
        "location_inaccessible",
    ),
    (S.IN_TRANSIT, X.ADDRESS_ISSUE): ("address_issue",),
    (S.IN_TRANSIT, X.CONTACT_CARRIER): ("contact_carrier",),
    (S.IN_TRANSIT, X.DELAYED): ("delayed",),
    (S.IN_TRANSIT, X.DAMAGED): ("package_damaged",),
    (S.DELIVERED, None): ("delivered",),
    (S.RETURNING, X.RETURNED_TO_SENDER): ("return_to_sender", "package_unclaimed"),
    (S.FAILED, X.UNDELIVERABLE): ("package_undeliverable",),
    (S.FAILED, X.DISPOSED): ("package_disposed",),
    (S.FAILED, X.LOST): ("package_lost",),
}


@pytest.mark.parametrize(
    ("code", "status", "exception"),
    [(code, status, exception) for (status, exception), codes in TABLE_CHOICES.items() for code in codes],
)
def test_the_table_choices(code: str, status: S, exception: X | None) -> None:
    result = classify_scan("TRANSIT", code, None)
    assert (result.status, result.exception) == (status, exception)


def test_a_missing_action_flag_defaults_to_shippos_documented_value() -> None:
    assert classify_scan("TRANSIT", "delivery_attempted", None).action_required is True
    assert classify_scan("TRANSIT", "delayed", None).action_required is False


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PRE_TRANSIT", (S.LABEL_CREATED, None)),
        ("TRANSIT", (S.IN_TRANSIT, None)),
        ("DELIVERED", (S.DELIVERED, None)),
        ("RETURNED", (S.RETURNING, X.RETURNED_TO_SENDER)),
        ("FAILURE", (S.FAILED, X.UNDELIVERABLE)),
        ("UNKNOWN", (S.UNKNOWN, None)),
        ("TELEPORTED", (S.UNKNOWN, None)),
        ("", (S.UNKNOWN, None)),
    ],
)
@pytest.mark.parametrize("code", [None, "", "other", "brand_new_code"])
def test_a_null_other_or_unknown_code_falls_back_on_the_status(
    status: str, expected: tuple[S, X | None], code: str | None
) -> None:
    result = classify_scan(status, code, False)
    assert (result.status, result.exception) == expected


def test_an_unknown_code_flagged_action_required_opens_contact_carrier() -> None:
    result = classify_scan("TRANSIT", "brand_new_code", True)
    assert (result.status, result.exception, result.action_required) == (
        S.IN_TRANSIT,
        X.CONTACT_CARRIER,
        True,
    )


def test_an_unknown_code_flagged_on_a_failure_keeps_the_failure_class() -> None:
    assert classify_scan("FAILURE", "brand_new_code", True).exception is X.UNDELIVERABLE


def test_status_and_code_are_case_insensitive() -> None:
    assert classify_scan("transit", "OUT_FOR_DELIVERY", None).status is S.OUT_FOR_DELIVERY


@settings(max_examples=200, deadline=None)
@given(st.text(), st.one_of(st.none(), st.text()), st.one_of(st.none(), st.booleans()))
def test_classification_never_crashes_on_any_input(status: str, code: str | None, flag: bool | None) -> None:
    result = classify_scan(status, code, flag)
    assert isinstance(result.status, ShipmentStatus)


def test_every_exception_class_has_customer_and_merchant_action_text() -> None:
    assert set(CUSTOMER_ACTIONS) == set(ExceptionClass) == set(MERCHANT_ACTIONS)
    assert exception_action(X.DELIVERY_ATTEMPTED).startswith("Reschedule delivery")
    assert exception_action(None) == ""


#: Shippo's Transaction statuses and what each means here (None: no progress).
LABEL_CLASSES: dict[str, tuple[S, X | None] | None] = {
    "SUCCESS": (S.LABEL_CREATED, None),
    "ERROR": (S.LABEL_FAILED, X.LABEL_FAILED),
    "REFUNDED": (S.REFUNDED, None),
    "REFUNDPENDING": (S.REFUNDED, None),
    "WAITING": None,
    "QUEUED": None,
    "REFUNDREJECTED": None,
}


@pytest.mark.parametrize(("status", "expected"), [*LABEL_CLASSES.items(), ("SOMETHING_NEW", None)])
def test_every_transaction_status_is_classified(status: str, expected: tuple[S, X | None] | None) -> None:
    result = classify_label(status, ())
    assert (None if result is None else (result.status, result.exception)) == expected


def test_the_transaction_status_list_is_covered() -> None:
    assert set(TRANSACTION_STATUSES) == set(LABEL_CLASSES)


def test_a_failed_label_carries_the_carrier_messages_as_detail() -> None:
    result = classify_label("ERROR", ["The address as submitted could not be found.", "Try again."])
    assert result is not None
    assert result.detail == "The address as submitted could not be found.; Try again."
    assert result.action_required is True
    assert classify_label("ERROR", ()) is not None
