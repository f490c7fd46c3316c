"""The receiver's exception tree: each rejection knows its status code and outcome word.

Also the one JSON error shape both apps (the receiver and admin) answer with:
``{"error": <word>, "message": <text>}``, plus ``"fields": {field: problem}`` on a 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

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
    status_code = 400
    outcome = DeliveryOutcome.BAD_PAYLOAD
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        return error_response(self.status_code, str(self.outcome), self.message, headers=self.headers)


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
