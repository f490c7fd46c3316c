"""The one small interface every notification channel implements (docs/architecture.md, Layers).

Building a message (rendering, headers) is separate from sending it; ``send`` is the only I/O.
Vendor errors are translated at the edge into two outcomes the caller acts on:
:class:`TransientChannelError` (retry later) and :class:`PermanentChannelError` (record failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from domain.vocabulary import Channel


@dataclass(frozen=True)
class OutgoingMessage:
    channel: Channel
    to: str
    sender: str | None
    subject: str | None
    text: str
    html: str | None
    idempotency_key: str
    reply_to: str | None = None
    list_unsubscribe: str | None = None  # URL (https:) for List-Unsubscribe + one-click POST
    status_callback: str | None = None  # SMS: Twilio status callback URL
    test: bool = False  # a merchant's test send (admin/templates_api.py): X-Parcelhook-Test: 1


@dataclass(frozen=True)
class SendResult:
    provider_id: str


class ChannelError(Exception):
    """A channel could not send. ``code``: provider code (SMTP reply code, Twilio error code)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientChannelError(ChannelError):
    """Try again later (rate limit, provider 5xx/4xx-temporary, connection trouble)."""

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class PermanentChannelError(ChannelError):
    """Retrying will not help (invalid/opted-out recipient, rejected content, bad credentials)."""


class UncertainDeliveryError(ChannelError):
    """The message left us but no answer came back (a timeout or disconnect after the request
    or the DATA body was sent): the provider may have accepted it. Retrying could deliver it
    twice, so callers treat this as "outcome unknown" (at most once) — never as transient."""


@runtime_checkable
class ChannelAdapter(Protocol):
    """What sends one :class:`OutgoingMessage` over a channel (``domain.vocabulary.Channel``):
    :class:`notifiers.smtp.SmtpChannel`, :class:`notifiers.sms.TwilioSmsChannel`, the
    outbox (``workers/outbox.py``) and the test twin :class:`notifiers.testing.RecordingChannel`.
    ``send`` is the only I/O; it returns the provider's id or raises a :class:`ChannelError`."""

    name: str

    def send(self, msg: OutgoingMessage) -> SendResult: ...
