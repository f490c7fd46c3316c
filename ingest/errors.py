"""The receiver's exception tree: each rejection knows its status code and outcome word."""

from __future__ import annotations

from domain.vocabulary import DeliveryOutcome
from workers.telemetry import UnavailableReason


class Rejection(Exception):
    status_code = 400
    outcome = DeliveryOutcome.BAD_PAYLOAD
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": str(self.outcome), "message": self.message}


class UnknownMerchant(Rejection):
    status_code = 404
    outcome = DeliveryOutcome.UNKNOWN_MERCHANT


class BadToken(Rejection):
    status_code = 401
    outcome = DeliveryOutcome.BAD_TOKEN


class BadSignature(Rejection):
    status_code = 401
    outcome = DeliveryOutcome.BAD_SIGNATURE


class StaleSignature(Rejection):
    status_code = 401
    outcome = DeliveryOutcome.STALE_SIGNATURE


class BadPayload(Rejection):
    status_code = 400
    outcome = DeliveryOutcome.BAD_PAYLOAD


class UnsupportedMediaType(Rejection):
    status_code = 415
    outcome = DeliveryOutcome.UNSUPPORTED_MEDIA_TYPE


class TooLarge(Rejection):
    status_code = 413
    outcome = DeliveryOutcome.TOO_LARGE


class Unavailable(Rejection):
    """A dependency is unreachable — a 503 means that and nothing else: Shippo retries, so
    nothing is lost. Raise the subclass naming the dependency: its ``reason`` word starts the
    message (``"broker_unreachable: …"``), which is how the webhook log and the
    ``parcelhook_webhooks_unavailable{reason}`` counter tell them apart
    (``workers.telemetry.unavailable_reason``)."""

    status_code = 503
    outcome = DeliveryOutcome.UNAVAILABLE
    headers = {"Retry-After": "5"}
    reason = UnavailableReason.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason}: {message}")


class BrokerUnreachable(Unavailable):
    reason = UnavailableReason.BROKER


class DatabaseUnreachable(Unavailable):
    reason = UnavailableReason.DATABASE


class StateRedisUnreachable(Unavailable):
    """The Redis of the receiver's dedupe keys (the broker's own Redis unless it is RabbitMQ)."""

    reason = UnavailableReason.STATE_REDIS
