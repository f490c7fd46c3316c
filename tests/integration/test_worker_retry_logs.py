"""An expected, retried failure is one WARNING line — actor, message id, attempt n/max, exception
class, a short reason without customer data — and a traceback is logged only when the message
is given up. Real worker, real twilio client against the Twilio-compatible server."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h

pytestmark = pytest.mark.redis

*_, DELIVERED = scenario("delivered")
PHONE = "+15551230001"
#: Twilio's 500 body, quoting the customer's number as some provider errors do
UNSAFE_500 = f"Upstream carrier failure while delivering to {PHONE}"


#: The ``run`` fixture: ``fails`` Twilio 500s in a row (with ``retries`` retries when given) →
#: the system and the log records of the delivered webhook's processing.
Run = Callable[..., tuple[System, list[logging.LogRecord]]]


@pytest.fixture()
def run(
    make_system: Callable[..., System],
    sqlite_url: str,
    fast_retries: Callable[[int], None],
    caplog: pytest.LogCaptureFixture,
) -> Run:
    def run(*, fails: int, retries: int | None = None) -> tuple[System, list[logging.LogRecord]]:
        if retries is not None:
            fast_retries(retries)
        with h.channels() as (smtp, twilio):
            system, merchant = h.labelled_for_jane(make_system, sqlite_url, smtp, twilio, phone=PHONE)
            twilio.fail_next(500, message=UNSAFE_500, times=fails)
            caplog.clear()
            with caplog.at_level(logging.INFO):
                system.post(merchant, DELIVERED)
                system.drain()
            return system, list(caplog.records)

    return run


def _sms_send(system: System) -> h.Row:
    [row] = [
        r for r in h.rows(system) if r.channel == "sms" and r.kind == "delivered" and r.audience == "customer"
    ]
    return row


def _with_traceback(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.exc_info or r.exc_text]


def _text(record: logging.LogRecord) -> str:
    return logging.Formatter().format(record)


RETRY_LINE = re.compile(
    r"send_notification\[[0-9a-f-]{36}\] attempt (\d+)/(\d+) failed, will retry: "
    r"TransientChannelError \[20500\]: .*"
)


def test_a_transient_twilio_500_is_one_warning_line_per_retry_without_a_traceback(run: Run) -> None:
    system, records = run(fails=2)
    assert _sms_send(system).status == "sent"
    retries = [r for r in records if r.levelno == logging.WARNING and RETRY_LINE.fullmatch(r.getMessage())]
    assert [RETRY_LINE.fullmatch(r.getMessage()).groups() for r in retries] == [("1", "7"), ("2", "7")]  # type: ignore[union-attr]
    assert [r for r in records if r.levelno >= logging.ERROR] == []
    assert _with_traceback(records) == [], [_text(r) for r in _with_traceback(records)]
    assert all(PHONE not in _text(r) for r in records), [_text(r) for r in records if PHONE in _text(r)]


def test_retries_running_out_log_one_error_with_the_traceback(run: Run) -> None:
    system, records = run(fails=10, retries=2)
    assert _sms_send(system).status == "failed"
    retries = [r for r in records if r.levelno == logging.WARNING and RETRY_LINE.fullmatch(r.getMessage())]
    assert [RETRY_LINE.fullmatch(r.getMessage()).groups() for r in retries] == [("1", "3"), ("2", "3")]  # type: ignore[union-attr]
    [traced] = _with_traceback(records)
    assert traced.levelno == logging.ERROR
    assert re.fullmatch(
        r"send_notification\[[0-9a-f-]{36}\] gave up after attempt 3/3: TransientChannelError \[20500\]: .*",
        traced.getMessage(),
    )
    assert "Traceback (most recent call last)" in _text(traced)
    assert traced.exc_info and PHONE in str(traced.exc_info[1]), "the provider's text did quote the number"
    errors: list[Any] = [r for r in records if r.levelno >= logging.ERROR]
    assert errors == [traced], [_text(r) for r in errors]
    assert all(PHONE not in _text(r) for r in records), [_text(r) for r in records if PHONE in _text(r)]
