"""Shippo (status, substatus.code) -> our status and exception class, as tables.

Decisions (one line each; the tests pin them):

* information_received (PRE_TRANSIT) -> label_created: the carrier only has the electronic data.
* delivery_scheduled / delivery_rescheduled -> in_transit, no exception: informational, nothing to do.
* pickup_available -> available_for_pickup, no exception: it is progress (customer kind
  available_for_pickup fires), even though Shippo flags it action_required.
* location_inaccessible -> delivery_attempted (not address_issue): the carrier went there and could not
  deliver; the address itself is not known to be wrong.
* notice_left / reschedule_delivery -> delivery_attempted: both follow a failed attempt.
* package_held -> held (status stays in_transit).
* package_unclaimed -> returning + returned_to_sender: Shippo files it under RETURNED; it goes back.
* return_to_sender -> returning + returned_to_sender ("being returned"; "returned" is reached when a
  DELIVERED scan arrives while returning, see domain.shipment).
* package_undeliverable / package_disposed / package_lost -> failed + undeliverable / disposed / lost.
* other -> defers to the Shippo status (STATUS_FALLBACK), as does any unknown code.
* unknown code or status with action_required and no exception from the fallback -> contact_carrier.
* an unknown status string -> unknown (never an error).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from domain.vocabulary import ExceptionClass, ShipmentStatus

S = ShipmentStatus
X = ExceptionClass


@dataclass(frozen=True, slots=True)
class Classification:
    status: ShipmentStatus
    exception: ExceptionClass | None
    action_required: bool
    customer_action: str
    merchant_action: str
    detail: str = ""


SUBSTATUS_TABLE: Mapping[str, tuple[ShipmentStatus, ExceptionClass | None]] = MappingProxyType(
    {
        # PRE_TRANSIT
        "information_received": (S.LABEL_CREATED, None),
        # TRANSIT, moving
        "package_accepted": (S.IN_TRANSIT, None),
        "package_arrived": (S.IN_TRANSIT, None),
        "package_departed": (S.IN_TRANSIT, None),
        "package_processed": (S.IN_TRANSIT, None),
        "package_processing": (S.IN_TRANSIT, None),
        "package_forwarded": (S.IN_TRANSIT, None),
        "delivery_scheduled": (S.IN_TRANSIT, None),
        "delivery_rescheduled": (S.IN_TRANSIT, None),
        "out_for_delivery": (S.OUT_FOR_DELIVERY, None),
        "pickup_available": (S.AVAILABLE_FOR_PICKUP, None),
        # TRANSIT, exceptions
        "package_held": (S.IN_TRANSIT, X.HELD),
        "delivery_attempted": (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED),
        "notice_left": (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED),
        "reschedule_delivery": (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED),
        "location_inaccessible": (S.IN_TRANSIT, X.DELIVERY_ATTEMPTED),
        "address_issue": (S.IN_TRANSIT, X.ADDRESS_ISSUE),
        "contact_carrier": (S.IN_TRANSIT, X.CONTACT_CARRIER),
        "delayed": (S.IN_TRANSIT, X.DELAYED),
        "package_damaged": (S.IN_TRANSIT, X.DAMAGED),
        # DELIVERED
        "delivered": (S.DELIVERED, None),
        # RETURNED
        "return_to_sender": (S.RETURNING, X.RETURNED_TO_SENDER),
        "package_unclaimed": (S.RETURNING, X.RETURNED_TO_SENDER),
        # FAILURE
        "package_undeliverable": (S.FAILED, X.UNDELIVERABLE),
        "package_disposed": (S.FAILED, X.DISPOSED),
        "package_lost": (S.FAILED, X.LOST),
        # UNKNOWN
        "other": (S.UNKNOWN, None),
    }
)

# Codes whose row only names the status family: classification defers to STATUS_FALLBACK.
DEFER_TO_STATUS: frozenset[str] = frozenset({"other"})

# Shippo's own action_required per code (substatus.csv), used when a payload omits the flag.
ACTION_REQUIRED_CODES: frozenset[str] = frozenset(
    {
        "address_issue",
        "contact_carrier",
        "delivery_attempted",
        "location_inaccessible",
        "notice_left",
        "package_damaged",
        "package_held",
        "pickup_available",
        "reschedule_delivery",
        "package_unclaimed",
        "package_undeliverable",
        "package_lost",
    }
)

STATUS_FALLBACK: Mapping[str, tuple[ShipmentStatus, ExceptionClass | None]] = MappingProxyType(
    {
        "PRE_TRANSIT": (S.LABEL_CREATED, None),
        "TRANSIT": (S.IN_TRANSIT, None),
        "DELIVERED": (S.DELIVERED, None),
        "RETURNED": (S.RETURNING, X.RETURNED_TO_SENDER),
        "FAILURE": (S.FAILED, X.UNDELIVERABLE),
        "UNKNOWN": (S.UNKNOWN, None),
    }
)

# Exception class a flagged-but-unexplained scan opens.
ACTION_FALLBACK_EXCEPTION = X.CONTACT_CARRIER

# What the customer should do (template context exception.action).
CUSTOMER_ACTIONS: Mapping[ExceptionClass, str] = MappingProxyType(
    {
        X.DELIVERY_ATTEMPTED: "Reschedule delivery with the carrier or pick the parcel up at the carrier's location",
        X.ADDRESS_ISSUE: "Contact us or the carrier to correct the delivery address",
        X.DELAYED: "No action needed; the carrier will deliver as soon as it can",
        X.HELD: "Contact the carrier to arrange release or collection of the parcel",
        X.DAMAGED: "No action needed; we are looking into it with the carrier",
        X.LOST: "No action needed; we are looking into it with the carrier",
        X.UNDELIVERABLE: "Contact us to arrange a new delivery",
        X.RETURNED_TO_SENDER: "Contact us if you still want the parcel",
        X.CONTACT_CARRIER: "Contact the carrier for more information",
        X.DISPOSED: "Contact us to arrange a replacement",
        X.STALLED: "No action needed; we are checking with the carrier",
        X.LABEL_FAILED: "No action needed",
    }
)

# What the merchant should do (alerts).
MERCHANT_ACTIONS: Mapping[ExceptionClass, str] = MappingProxyType(
    {
        X.DELIVERY_ATTEMPTED: "Check the customer has rescheduled or collected the parcel",
        X.ADDRESS_ISSUE: "Confirm the address with the customer and give the correction to the carrier",
        X.DELAYED: "Watch the shipment; tell the customer if the delay grows",
        X.HELD: "Contact the carrier to find out why the parcel is held and arrange release",
        X.DAMAGED: "Open a claim with the carrier and arrange a replacement",
        X.LOST: "Open a claim with the carrier and send a replacement",
        X.UNDELIVERABLE: "Contact the customer and the carrier to arrange a new delivery or a return",
        X.RETURNED_TO_SENDER: "Expect the parcel back; contact the customer about a reshipment or a refund",
        X.CONTACT_CARRIER: "Contact the carrier for details of the problem",
        X.DISPOSED: "Contact the carrier and arrange a replacement or a refund",
        X.STALLED: "No carrier scan for a while: contact the carrier",
        X.LABEL_FAILED: "Fix the shipment details and buy the label again",
    }
)

# Label (Transaction) status -> status; None means "no progress" (WAITING, QUEUED, REFUNDREJECTED, unknown).
LABEL_TABLE: Mapping[str, tuple[ShipmentStatus, ExceptionClass | None]] = MappingProxyType(
    {
        "SUCCESS": (S.LABEL_CREATED, None),
        "ERROR": (S.LABEL_FAILED, X.LABEL_FAILED),
        "REFUNDED": (S.REFUNDED, None),
        "REFUNDPENDING": (S.REFUNDED, None),
    }
)
TRANSACTION_STATUSES: tuple[str, ...] = (
    "WAITING",
    "QUEUED",
    "SUCCESS",
    "ERROR",
    "REFUNDED",
    "REFUNDPENDING",
    "REFUNDREJECTED",
)


def _classification(
    status: ShipmentStatus, exception: ExceptionClass | None, action_required: bool, detail: str = ""
) -> Classification:
    return Classification(
        status=status,
        exception=exception,
        action_required=action_required,
        customer_action=CUSTOMER_ACTIONS[exception] if exception else "",
        merchant_action=MERCHANT_ACTIONS[exception] if exception else "",
        detail=detail,
    )


def classify_scan(status: str, substatus_code: str | None, action_required: bool | None) -> Classification:
    """Never raises: unknown codes fall back on the status, unknown statuses on 'unknown'."""
    code = (substatus_code or "").strip().lower()
    shippo_status = (status or "").strip().upper()
    row = SUBSTATUS_TABLE.get(code)
    if row is not None and code not in DEFER_TO_STATUS:
        flagged = action_required if action_required is not None else code in ACTION_REQUIRED_CODES
        return _classification(row[0], row[1], flagged)
    ours, exception = STATUS_FALLBACK.get(shippo_status, (S.UNKNOWN, None))
    flagged = bool(action_required)
    if flagged and exception is None:
        exception = ACTION_FALLBACK_EXCEPTION
    return _classification(ours, exception, flagged)


def classify_label(status: str, messages: Iterable[str] = ()) -> Classification | None:
    """Classification of a Transaction status; None when it is no progress."""
    row = LABEL_TABLE.get((status or "").strip().upper())
    if row is None:
        return None
    ours, exception = row
    detail = "; ".join(m for m in messages if m) if exception else ""
    if exception and not detail:
        detail = "the carrier refused the label"
    return _classification(ours, exception, exception is not None, detail)


def exception_action(exception: ExceptionClass | None) -> str:
    """exception.action for templates."""
    return CUSTOMER_ACTIONS.get(exception, "") if exception else ""
