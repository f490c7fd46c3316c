"""Twilio talking back on `web`: STOP/START/HELP and message status callbacks, verified with the
twilio library's ``RequestValidator`` (URL = PARCELHOOK_PUBLIC_URL + path), 403 when unverifiable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

_label, _pre, _accepted, _departed, _arrived, OUT_FOR_DELIVERY, DELIVERED = scenario("delivered")
PHONE = "+15551230001"
INBOUND = "/webhooks/twilio/acme/inbound"
STATUS = "/webhooks/twilio/acme/status"


def _system(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer
) -> tuple[System, dict[str, Any]]:
    return h.labelled_for_jane(make_system, url, smtp, twilio, phone=PHONE)


def _inbound(body: str, sender: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": h.ACCOUNT_SID,
        "From": sender,
        "To": h.SMS_FROM,
        "Body": body,
        "NumMedia": "0",
    }


def test_stop_suppresses_later_sms_and_start_re_enables_them(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, database_url, smtp, twilio)
        response = h.post_twilio(system, INBOUND, _inbound("Stop"))
        assert response.status_code == 200
        assert response.mimetype == "text/xml"
        system.drain()

        system.post(merchant, OUT_FOR_DELIVERY)
        system.drain()
        row = h.sms_row(system, "out_for_delivery")
        assert row.status == "suppressed" and "opted out" in (row.error or "")
        assert twilio.messages == []
        emails = [r for r in h.rows(system) if r.channel == "email" and r.kind == "out_for_delivery"]
        assert [r.status for r in emails] == ["sent"], "STOP is about SMS only"

        assert h.post_twilio(system, INBOUND, _inbound("START")).status_code == 200
        system.drain()
        system.post(merchant, DELIVERED)
        system.drain()
        delivered = h.sms_row(system, "delivered")
        assert (delivered.status, [m["to"] for m in twilio.messages]) == ("sent", [PHONE]), "START re-enabled"


def test_stop_from_another_number_changes_nothing_for_this_customer(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, sqlite_url, smtp, twilio)
        assert h.post_twilio(system, INBOUND, _inbound("STOP", sender="+15559990000")).status_code == 200
        system.drain()
        system.post(merchant, DELIVERED)
        system.drain()
        assert h.sms_row(system, "delivered").status == "sent"


def test_help_answers_with_twiml(make_system: Callable[..., System], sqlite_url: str) -> None:
    with h.channels() as (smtp, twilio):
        system, _merchant = _system(make_system, sqlite_url, smtp, twilio)
        response = h.post_twilio(system, INBOUND, _inbound("help"))
        assert response.status_code == 200
        assert response.mimetype == "text/xml"
        text = response.get_data(as_text=True)
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
        assert "Acme Inc" in text and "STOP" in text and "START" in text


def test_status_callbacks_move_the_notification_to_delivered_or_failed(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, database_url, smtp, twilio)
        system.post(merchant, OUT_FOR_DELIVERY)
        system.drain()
        system.post(merchant, DELIVERED)
        system.drain()
        ofd, delivered = h.sms_row(system, "out_for_delivery"), h.sms_row(system, "delivered")
        assert [m["status_callback"] for m in twilio.messages] == ["http://127.0.0.1:8000" + STATUS] * 2

        def status(sid: str, word: str, code: str | None = None) -> None:
            form = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": h.ACCOUNT_SID,
                "From": h.SMS_FROM,
                "To": PHONE,
                "MessageStatus": word,
                "SmsStatus": word,
            }
            if code:
                form["ErrorCode"] = code
            assert h.post_twilio(system, STATUS, form).status_code == 204

        status(ofd.provider_id or "", "sent")
        status(ofd.provider_id or "", "delivered")
        status(ofd.provider_id or "", "sent")  # late and out of order: never moves backwards
        status(delivered.provider_id or "", "undelivered", "30003")
        system.drain()
        ofd, delivered = h.sms_row(system, "out_for_delivery"), h.sms_row(system, "delivered")
        assert ofd.status == "delivered"
        assert (delivered.status, delivered.error_code) == ("failed", "30003")
        order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
        by_kind = {n["kind"]: n for n in order["notifications"] if n["channel"] == "sms"}
        assert by_kind["out_for_delivery"]["status"] == "delivered"
        assert by_kind["delivered"]["status"] == "failed"


@pytest.mark.parametrize("path", [INBOUND, STATUS])
@pytest.mark.parametrize("case", ["missing", "garbage", "wrong_token", "tampered", "wrong_url"])
def test_unverifiable_twilio_callbacks_get_403_and_change_nothing(
    make_system: Callable[..., System], sqlite_url: str, path: str, case: str
) -> None:
    system = make_system(sqlite_url, twilio_account_sid=h.ACCOUNT_SID, twilio_auth_token=h.AUTH_TOKEN)
    system.create_merchant("acme", **h.merchant_profile())
    form = (
        _inbound("STOP") if path == INBOUND else {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if case == "garbage":
        headers["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    elif case == "wrong_token":
        headers.update(h.sign_twilio(system, path, form, token="not-the-auth-token"))
    elif case == "tampered":
        headers.update(h.sign_twilio(system, path, form))
        form = {**form, "From" if path == INBOUND else "MessageStatus": "+15550000000"}
    elif case == "wrong_url":
        headers["X-Twilio-Signature"] = RequestValidator(h.AUTH_TOKEN).compute_signature(
            "https://elsewhere.example" + path, form
        )
    from urllib.parse import urlencode

    response = system.web.post(path, data=urlencode(form), headers=headers)
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["error"] == "bad_signature"
    assert system.broker.client.hlen(f"{system.broker.namespace}:events.msgs") == 0, "nothing queued"


def test_twilio_callbacks_without_twilio_configured_are_refused(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = h.acme(make_system, sqlite_url)
    response = h.post_twilio(system, INBOUND, _inbound("STOP"))
    assert response.status_code == 403


def test_twilio_callbacks_for_an_unknown_merchant_are_404(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url, twilio_account_sid=h.ACCOUNT_SID, twilio_auth_token=h.AUTH_TOKEN)
    response = h.post_twilio(system, "/webhooks/twilio/nobody/inbound", _inbound("STOP"))
    assert response.status_code == 404
