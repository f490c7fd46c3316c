"""Test sends of merchant templates through the admin API, on SQLite and PostgreSQL: the rendered
template with sample data goes through the real configured channel (a real SMTP server, the
Twilio-compatible server, the outbox) to the merchant's own address only, marked as a test,
recorded as a merchant notification, at most 10 per merchant per hour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

EMAIL = "/api/merchants/acme/templates/shipped/email"
SMS = "/api/merchants/acme/templates/delivered/sms"
SUPPORT = "help@acme.example"
TEST_PHONE = "+14155550177"


def _system(
    make_system: Callable[..., System],
    url: str,
    smtp: SmtpServer | None = None,
    twilio: TwilioServer | None = None,
) -> System:
    overrides = h.channel_overrides(smtp, twilio) if smtp and twilio else {}
    system = make_system(url, **overrides)
    system.create_merchant(
        "acme", **h.merchant_profile(support_email=SUPPORT, test_phone="+1 (415) 555-0177")
    )
    return system


def _send(system: System, path: str, body: dict[str, Any]) -> Any:
    return system.admin.post(path + "/test-send", json=body, headers=system.auth())


def test_a_test_email_reaches_the_smtp_server_marked_as_a_test(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system = _system(make_system, database_url, smtp, twilio)
        saved = system.admin.put(
            EMAIL,
            json={
                "subject": "Order {{ order.ref }} shipped",
                "text": "Hi {{ customer.first_name }}, it shipped.",
            },
            headers=system.auth(),
        )
        assert saved.status_code == 201
        response = _send(system, EMAIL, {"to": h.ALERTS})
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["test"] is True and answer["channel"] == "email" and answer["provider"] == "smtp"
        assert answer["to"] == "o***@acme.example" and answer["source"] == "merchant"
        assert [m.rcpt_tos for m in smtp.messages] == [[h.ALERTS]]
        message = smtp.messages[0].message
        assert message["Subject"] == "[TEST] Order 1042 shipped"  # the sample order
        assert message["X-Parcelhook-Test"] == "1"
        assert message["Message-ID"] == answer["provider_id"]
        assert "Hi Jane, it shipped." in message.get_content()
        # recorded, as the merchant's (no order, never a customer's)
        [row] = h.rows(system)
        assert (row.audience, row.status, row.kind, row.to, row.provider_id) == (
            "merchant",
            "sent",
            "shipped",
            h.ALERTS,
            answer["provider_id"],
        )
        assert not twilio.messages


def test_an_unsaved_template_can_be_tried_and_is_not_saved(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system = _system(make_system, database_url, smtp, twilio)
        response = _send(
            system,
            EMAIL,
            {"to": SUPPORT, "subject": "Try {{ order.ref }}", "text": "Draft", "html": "<b>Draft</b>"},
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["source"] == "unsaved"
        assert smtp.messages[0].message["Subject"] == "[TEST] Try 1042"
        current = system.admin.get(EMAIL, headers=system.auth()).get_json()
        assert current["source"] == "default"
        versions = system.admin.get(EMAIL + "/versions", headers=system.auth()).get_json()
        assert versions["versions"] == []
        broken = _send(system, EMAIL, {"to": SUPPORT, "subject": "S", "text": "{{ nope.x }}"})
        assert broken.status_code == 422 and broken.get_json()["error"] == "invalid_template"
        assert len(smtp.messages) == 1


def test_a_test_sms_reaches_the_twilio_server_marked_as_a_test(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system = _system(make_system, database_url, smtp, twilio)
        response = _send(system, SMS, {"to": "+1 415-555-0177"})  # formatted: normalized to E.164
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["provider"] == "twilio" and answer["source"] == "default"
        [sent] = twilio.messages
        assert sent["to"] == TEST_PHONE and sent["from"] == h.SMS_FROM
        assert sent["body"].startswith("[TEST] ") and sent["sid"] == answer["provider_id"]
        assert not smtp.messages


@pytest.mark.parametrize(
    ("path", "to", "problem"),
    [
        (EMAIL, "jane@example.com", "own addresses"),  # the customer of a registered order
        (EMAIL, "OPS@acme.example.evil", "own addresses"),
        (EMAIL, "not an address", "own addresses"),
        (EMAIL, h.ALERTS + "\n", "own addresses"),
        (SMS, "+15551230001", "test_phone"),  # the customer's phone
        (SMS, TEST_PHONE + "\n", "test_phone"),
        (SMS, 15551230001, "test_phone"),
    ],
)
def test_a_customer_or_any_other_address_is_refused(
    make_system: Callable[..., System], database_url: str, path: str, to: Any, problem: str
) -> None:
    with h.channels() as (smtp, twilio):
        system = _system(make_system, database_url, smtp, twilio)
        h.register_order(system, "1001", email="jane@example.com", phone="+15551230001")
        response = _send(system, path, {"to": to})
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"] == "invalid" and problem in response.get_json()["fields"]["to"]
        assert not smtp.messages and not twilio.messages
        assert not [r for r in h.rows(system, policy_suppressed=True) if r.audience == "merchant"]


def test_a_test_sms_needs_the_merchants_test_phone(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url)
    system.create_merchant("acme", **h.merchant_profile())
    response = _send(system, SMS, {"to": TEST_PHONE})
    assert response.status_code == 422 and "test_phone" in response.get_json()["fields"]["to"]
    bad = system.admin.put("/api/merchants/acme", json={"test_phone": "555"}, headers=system.auth())
    assert bad.status_code == 422 and "test_phone" in bad.get_json()["fields"]


def test_the_eleventh_test_send_in_an_hour_is_429(
    make_system: Callable[..., System], database_url: str
) -> None:
    system = _system(make_system, database_url)  # no SMTP configured: the outbox
    for _ in range(10):
        assert _send(system, EMAIL, {"to": SUPPORT}).status_code == 200
    refused = _send(system, EMAIL, {"to": SUPPORT})
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert _send(system, SMS, {"to": TEST_PHONE}).status_code == 429  # per merchant, every channel
    outbox = system.admin.get("/api/outbox?merchant=acme", headers=system.auth()).get_json()["messages"]
    assert len(outbox) == 10
    assert all(
        m["headers"]["X-Parcelhook-Test"] == "1" and m["subject"].startswith("[TEST] ") for m in outbox
    )
    system.create_merchant("other", email_from="ship@other.example")
    other = system.admin.post(
        "/api/merchants/other/templates/shipped/email/test-send",
        json={"to": "ship@other.example"},
        headers=system.auth(),
    )
    assert other.status_code == 200  # another merchant has its own allowance


def test_a_refusing_channel_is_a_502_naming_its_error(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.channels() as (smtp, twilio):
        system = _system(make_system, database_url, smtp, twilio)
        smtp.reply_next("rcpt", "550 5.1.1 Mailbox unavailable")
        response = _send(system, EMAIL, {"to": h.ALERTS})
        assert response.status_code == 502
        body = response.get_json()
        assert body["error"] == "channel_error" and body["provider"] == "smtp" and body["code"] == "550"
        assert "smtp: recipient refused: 550" in body["message"]
        twilio.fail_next(400, code=21211)
        sms = _send(system, SMS, {"to": TEST_PHONE})
        assert sms.status_code == 502 and sms.get_json()["code"] == "21211"
        assert "twilio" in sms.get_json()["message"]
        assert [(r.status, r.error_code) for r in h.rows(system)] == [("failed", "550"), ("failed", "21211")]
