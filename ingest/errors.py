"""The receiver's exception tree: each rejection knows its status code and outcome word.

Also the one JSON error shape both apps (the receiver and admin) answer with:
``{"error": <word>, "message": <text>}``, plus ``"fields": {field: problem}`` on a 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NotRequired, TypedDict

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from domain.vocabulary import DeliveryOutcome
from workers.telemetry import UnavailableReason


class ErrorBody(TypedDict):
    error: str  # one word (snake_case): what went wrong, for programs
    message: str  # a sentence: what went wrong, for people
    fields: NotRequired[dict[str, str]]  # 422 only: each invalid field and its problem


def error_body(error: str, message: str, *, fields: Mapping[str, str] | None = None) -> ErrorBody:
    body = ErrorBody(error=error, message=message)
    if fields is not None:
        body["fields"] = dict(fields)
    return body


def error_response(
    status: int,
    error: str,
    message: str,
    *,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(error, message, fields=fields))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def http_error_response(exc: HTTPException, message: str | None = None) -> Response:
    """werkzeug's own errors (no route, wrong method, malformed request) in the same shape."""
    word = exc.name.lower().replace(" ", "_")
    return error_response(exc.code or 500, word, message or exc.description or exc.name)


class Rejection(Exception):
    """A webhook we refuse. A subclass names its status code and outcome word in its class line
    (``class TooLarge(Rejection, status=413, outcome=DeliveryOutcome.TOO_LARGE): ...``)."""

    status_code: ClassVar[int] = 400
    outcome: ClassVar[DeliveryOutcome] = DeliveryOutcome.BAD_PAYLOAD
    headers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(
        cls, *, status: int | None = None, outcome: DeliveryOutcome | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if outcome is not None:
            cls.outcome = outcome

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        return error_response(self.status_code, str(self.outcome), self.message, headers=self.headers)


class UnknownMerchant(Rejection, status=404, outcome=DeliveryOutcome.UNKNOWN_MERCHANT): ...


class BadPayload(Rejection, status=400, outcome=DeliveryOutcome.BAD_PAYLOAD): ...


class UnsupportedMediaType(Rejection, status=415, outcome=DeliveryOutcome.UNSUPPORTED_MEDIA_TYPE): ...


class TooLarge(Rejection, status=413, outcome=DeliveryOutcome.TOO_LARGE): ...


class Unauthorized(Rejection, status=401):
    """The request does not prove it comes from the merchant's Shippo account."""


class BadToken(Unauthorized, outcome=DeliveryOutcome.BAD_TOKEN): ...


class BadSignature(Unauthorized, outcome=DeliveryOutcome.BAD_SIGNATURE): ...


class StaleSignature(Unauthorized, outcome=DeliveryOutcome.STALE_SIGNATURE): ...


class Unavailable(Rejection, status=503, outcome=DeliveryOutcome.UNAVAILABLE):
    """A dependency is unreachable — a 503 means that and nothing else: Shippo retries, so
    nothing is lost. Raise the subclass naming the dependency: its ``reason`` word starts the
    message (``"broker_unreachable: …"``), which is how the webhook log and the
    ``parcelhook_webhooks_unavailable{reason}`` counter tell them apart
    (``workers.telemetry.unavailable_reason``)."""

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
