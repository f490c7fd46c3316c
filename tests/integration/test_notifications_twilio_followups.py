"""What Twilio tells us after the fact, through the real twilio client and the signed callback route:

* error 21610 (the number replied STOP at the carrier level) records an opt-out, so the next SMS
  to that number is suppressed instead of refused again;
* an ``undelivered``/``failed`` status callback raises the merchant's ``notification_failed``
  alert — once per notification, however often the callback comes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from store.schema import opt_outs
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

*_, OUT_FOR_DELIVERY, DELIVERED = scenario("delivered")
PHONE = "+15551230001"
STATUS = "/webhooks/twilio/acme/status"


def _message_requests(twilio: TwilioServer) -> int:
    return sum(1 for r in twilio.requests if r.method == "POST" and r.path.endswith("/Messages.json"))


def test_twilio_21610_records_an_opt_out_and_the_next_sms_is_suppressed(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        twilio.opted_out.add(PHONE)  # the carrier answers 21610 for this number
        # registered in a formatted way: the opt-out is stored (and matched) as E.164
        system, merchant = h.labelled_for_jane(
            make_system, database_url, smtp, twilio, phone="+1 (555) 123-0001"
        )
        system.post(merchant, OUT_FOR_DELIVERY)
        system.drain()
        refused = h.sms_row(system, "out_for_delivery")
        assert (refused.status, refused.error_code) == ("failed", "21610")
        with system.database.read() as conn:
            recorded = conn.execute(
                sa.select(opt_outs.c.channel, opt_outs.c.address, opt_outs.c.source)
            ).all()
        assert [tuple(r) for r in recorded] == [("sms", PHONE, "carrier_stop")]
        attempts = _message_requests(twilio)

        system.post(merchant, DELIVERED)
        system.drain()
        later = h.sms_row(system, "delivered")
        assert later.status == "suppressed" and "opted out" in (later.error or "")
        assert _message_requests(twilio) == attempts, "no second refused request to Twilio"
        emails = [r for r in h.rows(system) if r.channel == "email" and r.kind == "delivered"]
        assert [r.status for r in emails] == ["sent"], "a carrier STOP is about SMS only"


@pytest.mark.parametrize("word", ["undelivered", "failed"])
def test_an_undelivered_sms_alerts_the_merchant_once_however_often_twilio_says_so(
    make_system: Callable[..., System], database_url: str, word: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = h.labelled_for_jane(make_system, database_url, smtp, twilio, phone=PHONE)
        system.post(merchant, OUT_FOR_DELIVERY)
        system.drain()
        sms = h.sms_row(system, "out_for_delivery")
        assert sms.status == "sent" and sms.provider_id
        form = {
            "MessageSid": sms.provider_id,
            "SmsSid": sms.provider_id,
            "AccountSid": h.ACCOUNT_SID,
            "From": h.SMS_FROM,
            "To": PHONE,
            "MessageStatus": word,
            "SmsStatus": word,
            "ErrorCode": "30003",
        }
        for _ in range(3):  # Twilio retries callbacks; a repeat must not alert again
            assert h.post_twilio(system, STATUS, form).status_code == 204
        system.drain()
        for _ in range(2):  # nor one that comes after the alert went out
            assert h.post_twilio(system, STATUS, form).status_code == 204
        system.drain()

        failed = h.sms_row(system, "out_for_delivery")
        assert (failed.status, failed.error_code) == ("failed", "30003")
        alerts = [r for r in h.rows(system) if r.kind == "notification_failed"]
        assert [(r.status, r.to, r.key) for r in alerts] == [("sent", h.ALERTS, f"{sms.key}:failed")]
        [mail] = [m for m in smtp.messages if m.rcpt_tos == [h.ALERTS]]
        text = h.text_part(mail)
        assert "out_for_delivery" in text and word in text and "30003" in text
        with system.database.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(opt_outs)).scalar_one() == 0
