"""Test twin for :class:`notifiers.channel.ChannelAdapter` (like dramatiq's StubBroker)."""

from __future__ import annotations

import threading
from collections import deque

from .channel import ChannelError, OutgoingMessage, SendResult


class RecordingChannel:
    """Records every message; can be scripted to fail.

    >>> ch = RecordingChannel("sms")
    >>> ch.fail_next(TransientChannelError("429", code="429"))   # next send raises, then succeeds
    """

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.sent: list[OutgoingMessage] = []
        self.attempts: list[OutgoingMessage] = []
        self._script: deque[ChannelError | None] = deque()
        self._always: ChannelError | None = None
        self._lock = threading.Lock()
        self._counter = 0

    def fail_next(self, *errors: ChannelError | None) -> None:
        """Queue outcomes for the next sends: an exception raises, ``None`` succeeds."""
        with self._lock:
            self._script.extend(errors)

    def fail_always(self, error: ChannelError | None) -> None:
        """Raise ``error`` on every send after the scripted ones (``None`` to stop)."""
        self._always = error

    def send(self, msg: OutgoingMessage) -> SendResult:
        with self._lock:
            self.attempts.append(msg)
            outcome = self._script.popleft() if self._script else self._always
            if outcome is not None:
                raise outcome
            self.sent.append(msg)
            self._counter += 1
            return SendResult(provider_id=f"{self.name}-{self._counter}")

    def sent_to(self, to: str) -> list[OutgoingMessage]:
        return [m for m in self.sent if m.to == to]

    def keys(self) -> list[str]:
        return [m.idempotency_key for m in self.sent]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self.attempts.clear()
            self._script.clear()
            self._always = None
