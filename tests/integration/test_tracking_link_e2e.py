"""Through the real pipeline (receiver → Redis → worker → SMTP / Twilio-compatible server): a
Shippo webhook whose ``tracking_url_provider`` points at an attacker never puts that link in front
of the customer, and a shipment whose carrier is unknown is described in words, never "None"."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

LABEL, _pre, _accepted, _departed, _arrived, OUT_FOR_DELIVERY, _delivered = scenario("delivered")
NUMBER = "9205590164917312751089"
USPS_PAGE = f"https://tools.usps.com/go/TrackConfirmAction?tLabels={NUMBER}"
ATTACKER = f"https://tools.usps.com.evil.example/go/TrackConfirmAction_input?origTrackNum={NUMBER}"


def _label(*, provider_url: str, rate: Any) -> bytes:
    body = json.loads(LABEL)
    body["data"]["tracking_url_provider"] = provider_url
    body["data"]["rate"] = rate
    return json.dumps(body).encode()


def _system(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer
) -> tuple[System, dict[str, Any]]:
    return h.acme_for_jane(make_system, url, smtp, twilio)


def _links(html: str) -> set[str]:
    return set(re.findall(r'href="([^"]*)"', html))


def test_an_attacker_tracking_url_in_a_transaction_webhook_never_reaches_the_customer(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, sqlite_url, smtp, twilio)
        rate = {"object_id": "5c5c337c59e100202c60783ee3f07f41", "provider": "USPS"}
        assert system.post(merchant, _label(provider_url=ATTACKER, rate=rate)).status_code == 200
        system.drain()
        assert system.post(merchant, OUT_FOR_DELIVERY).status_code == 200
        system.drain()

        subjects = sorted(str(m.message["Subject"]) for m in smtp.messages)
        assert len(smtp.messages) == 2, subjects  # shipped + out_for_delivery
        for mail in smtp.messages:
            text, html = h.text_part(mail), h.html_part(mail)
            assert "evil.example" not in text and "evil.example" not in html
            assert f"Track your parcel: {USPS_PAGE}" in text
            assert USPS_PAGE.replace("&", "&amp;") in _links(html)
            assert "Carrier: USPS" in text
        [sms] = twilio.messages
        assert "evil.example" not in sms["body"] and sms["body"].endswith(f"Track: {USPS_PAGE}")

        order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
        assert [s["tracking_url"] for s in order["shipments"]] == [USPS_PAGE]


def test_an_unknown_carrier_reads_as_words_and_gets_no_borrowed_link(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _system(make_system, sqlite_url, smtp, twilio)
        # the rate is only an id and the link names no known carrier: the carrier stays unknown
        label = _label(
            provider_url="https://track.evil.example/p?n=" + NUMBER, rate="a9e85d0a0a4eeb62e925990c551d3389"
        )
        assert system.post(merchant, label).status_code == 200
        system.drain()

        [mail] = smtp.messages
        text, html = h.text_part(mail), h.html_part(mail)
        assert "None" not in text and "None" not in html and "None" not in str(mail.message["Subject"])
        assert "Good news: order 1001 has shipped." in text
        assert "evil.example" not in text and "evil.example" not in html
        assert "Track your parcel" not in text and "Track your parcel" not in html
        assert "Carrier:" not in text and f"Tracking number: {NUMBER}" in text
        assert (
            _links(html)
            and all(
                link.startswith(("http://127.0.0.1:8000/unsubscribe/", "mailto:", "https://"))
                for link in _links(html)
            )
            and "" not in _links(html)
        )
