"""The contract's words (docs/api.md, Vocabularies), as StrEnums so they serialize as themselves."""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    TRANSACTION_CREATED = "transaction_created"
    TRANSACTION_UPDATED = "transaction_updated"
    TRACK_UPDATED = "track_updated"
    BATCH_CREATED = "batch_created"
    BATCH_PURCHASED = "batch_purchased"


class ShipmentStatus(StrEnum):
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    FAILED = "failed"
    LABEL_FAILED = "label_failed"
    REFUNDED = "refunded"
    UNKNOWN = "unknown"


class ExceptionClass(StrEnum):
    DELIVERY_ATTEMPTED = "delivery_attempted"
    ADDRESS_ISSUE = "address_issue"
    DELAYED = "delayed"
    HELD = "held"
    DAMAGED = "damaged"
    LOST = "lost"
    UNDELIVERABLE = "undeliverable"
    RETURNED_TO_SENDER = "returned_to_sender"
    CONTACT_CARRIER = "contact_carrier"
    DISPOSED = "disposed"
    STALLED = "stalled"
    LABEL_FAILED = "label_failed"


class OrderStatus(StrEnum):
    AWAITING_SHIPMENT = "awaiting_shipment"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    OUT_FOR_DELIVERY = "out_for_delivery"
    PARTIALLY_DELIVERED = "partially_delivered"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Audience(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"


class NotificationKind(StrEnum):
    # customer-facing
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    DELIVERY_ATTEMPTED = "delivery_attempted"
    ADDRESS_ISSUE = "address_issue"
    DELAYED = "delayed"
    RETURNED_TO_SENDER = "returned_to_sender"
    DELIVERY_FAILED = "delivery_failed"
    PARTIALLY_DELIVERED = "partially_delivered"  # one parcel of an order arrived, others still on the way
    ETA_CHANGED = "eta_changed"  # the carrier moved the estimated delivery (off by default)
    # merchant alerts (email to the merchant's alert_email)
    LABEL_FAILED = "label_failed"
    EXCEPTION_ACTION_REQUIRED = "exception_action_required"
    STALLED = "stalled"
    NOTIFICATION_FAILED = "notification_failed"
    SHIPPO_AUTH_FAILED = "shippo_auth_failed"  # Shippo refused the merchant's API token (401)

    @property
    def audience(self) -> Audience:
        return Audience.MERCHANT if self in MERCHANT_ALERTS else Audience.CUSTOMER


MERCHANT_ALERTS: frozenset[NotificationKind] = frozenset(
    {
        NotificationKind.LABEL_FAILED,
        NotificationKind.EXCEPTION_ACTION_REQUIRED,
        NotificationKind.STALLED,
        NotificationKind.NOTIFICATION_FAILED,
        NotificationKind.SHIPPO_AUTH_FAILED,
    }
)
CUSTOMER_KINDS: tuple[NotificationKind, ...] = tuple(k for k in NotificationKind if k not in MERCHANT_ALERTS)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class DeliveryOutcome(StrEnum):
    """What the receiver answered for one webhook delivery (ops + metrics vocabulary)."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNKNOWN_MERCHANT = "unknown_merchant"
    BAD_TOKEN = "bad_token"  # noqa: S105 - an outcome name, not a secret
    BAD_SIGNATURE = "bad_signature"
    STALE_SIGNATURE = "stale_signature"
    BAD_PAYLOAD = "bad_payload"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"


class ProcessingOutcome(StrEnum):
    """What the worker did with one accepted webhook (``deliveries.outcome``, metrics label)."""

    PROCESSED = "processed"
    IGNORED = "ignored"  # an event we do not act on (batch events)
    DUPLICATE = "duplicate"  # its delivery row already existed


class ChangeKind(StrEnum):
    """What one applied event did to a shipment (domain.shipment.Change)."""

    STATUS_CHANGED = "status_changed"
    EXCEPTION_OPENED = "exception_opened"
    EXCEPTION_CLEARED = "exception_cleared"
    HISTORY_ADDED = "history_added"
    ETA_CHANGED = "eta_changed"  # the estimated delivery moved (occurrence: the new eta)
