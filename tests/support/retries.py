"""Retry timing for tests. Production backs off seconds to minutes; a test wants milliseconds.
The options are set with pytest's ``monkeypatch``, so each is restored after the test.

Registered for every integration test by tests/integration/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import dramatiq
import pytest


class RetryOptions(Protocol):
    def __call__(self, actor: dramatiq.Actor[Any, Any], **options: int) -> None: ...


@pytest.fixture()
def retry_options(monkeypatch: pytest.MonkeyPatch) -> RetryOptions:
    """``retry_options(actor, max_retries=1, min_backoff=10)``: set an actor's options for this test."""

    def set_options(actor: dramatiq.Actor[Any, Any], **options: int) -> None:
        for name, value in options.items():
            monkeypatch.setitem(actor.options, name, value)

    return set_options


@pytest.fixture()
def fast_retries(retry_options: RetryOptions) -> Callable[[int], None]:
    """send_notification backs off 10 s → 10 min in production; 50-100 ms here. Call the
    fixture with the number of retries a test wants."""
    from workers.actors import send_notification

    retry_options(send_notification, min_backoff=50, max_backoff=100)
    return lambda max_retries: retry_options(send_notification, max_retries=max_retries)
