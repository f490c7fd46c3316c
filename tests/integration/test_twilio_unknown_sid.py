"""A valid Twilio status callback for a message SID we never recorded is counted and dropped (no
dead letter, so no ops alert); one that merely beats our worker's recording of the SID is still
applied on retry. Signed callbacks through `web`, a real worker on the real broker."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.polling import wait_until
from tests.support.retries import RetryOptions
from tests.support.scenes import claimed_notification

pytestmark = pytest.mark.redis

STATUS = "/webhooks/twilio/acme/status"
SID = "SM" + "7" * 32


@pytest.fixture
def callback_retries(retry_options: RetryOptions) -> Callable[..., None]:
    """record_sms_status backs off 1 s → 2 min in production; tests pick their own."""
    from workers.actors import record_sms_status

    return functools.partial(retry_options, record_sms_status)


def _system(make_system: Callable[..., System], url: str) -> tuple[System, dict[str, Any]]:
    system = make_system(url, twilio_account_sid=h.ACCOUNT_SID, twilio_auth_token=h.AUTH_TOKEN)
    merchant = system.create_merchant("acme", **h.merchant_profile())
    system.start_worker()
    return system, merchant


def _receipt(system: System, sid: str = SID, word: str = "delivered") -> None:
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": h.ACCOUNT_SID,
        "From": h.SMS_FROM,
        "To": "+15551230001",
        "MessageStatus": word,
        "SmsStatus": word,
    }
    assert h.post_twilio(system, STATUS, form).status_code == 204


def _dead_events(system: System) -> int:
    return int(system.broker.client.zcard(f"{system.broker.namespace}:events.XQ"))


def test_a_receipt_for_an_unknown_sid_is_counted_and_dropped_not_dead_lettered(
    make_system: Callable[..., System],
    sqlite_url: str,
    callback_retries: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from workers import callbacks

    callback_retries(max_retries=1, min_backoff=10, max_backoff=50)
    monkeypatch.setattr(callbacks, "UNKNOWN_SID_GRACE", timedelta(0), raising=False)  # production: 45 s
    system, _merchant = _system(make_system, sqlite_url)
    with caplog.at_level(logging.DEBUG, logger="parcelhook.callbacks"):
        _receipt(system)
        system.drain()

    assert _dead_events(system) == 0
    assert h.delayed_messages(system, "events") == []
    assert any(
        r.name == "parcelhook.callbacks"
        and r.levelno == logging.DEBUG
        and "unknown message" in r.getMessage()
        and "dropped" in r.getMessage()
        for r in caplog.records
    )
    metrics = system.admin.get("/metrics", headers=system.auth()).get_data(as_text=True)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
    }
    assert (
        values[
            (
                "parcelhook_events_processed_total",
                (("actor", "record_sms_status"), ("outcome", "unknown_message")),
            )
        ]
        == 1
    )


def test_a_receipt_that_beats_the_recorded_sid_is_applied_on_retry(
    make_system: Callable[..., System], sqlite_url: str, callback_retries: Callable[..., None]
) -> None:
    from store import notifications as notification_store

    callback_retries(max_retries=8, min_backoff=300, max_backoff=600)
    system, merchant = _system(make_system, sqlite_url)
    system.admin.put(
        "/api/merchants/acme/orders/1001", json={"customer": {"phone": "+15551230001"}}, headers=system.auth()
    )
    system.post(merchant, scenario("delivered")[0])
    system.drain()
    row = claimed_notification(
        system, channel="sms", key="1001:s1:shipped:sms:race", to_address="+15551230001"
    )

    _receipt(system)  # Twilio is faster than our worker's "sent + SID" commit
    wait_until(lambda: h.delayed_messages(system, "events"), what="the receipt waiting for its retry")
    with system.database.write() as conn:
        notification_store.update(conn, row, status="sent", provider_id=SID, sending_at=None)
    system.drain()
    with system.database.read() as conn:
        n = notification_store.get(conn, row)
    assert n is not None and n.status == "delivered"
    assert _dead_events(system) == 0
