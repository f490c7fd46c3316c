"""What customers receive: merchant templates (validated, sandboxed, then really used), HTML
escaping, the email unsubscribe link, and the outbox when no channel is configured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

LABEL, _pre, _accepted, _departed, _arrived, OUT_FOR_DELIVERY, DELIVERED = scenario("delivered")
TEMPLATE = "/api/merchants/acme/templates/shipped/email"


@contextmanager
def _acme(
    make_system: Callable[..., System], url: str, name: str = "Jane Doe"
) -> Iterator[tuple[System, dict[str, Any], SmtpServer, TwilioServer]]:
    """:func:`h.acme_for_jane` on real channels (order 1001 for ``name``): the system, the
    merchant and both servers."""
    with h.channels() as (smtp, twilio):
        system, merchant = h.acme_for_jane(make_system, url, smtp, twilio, name=name)
        yield system, merchant, smtp, twilio


SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ order.__class__ }}",
    "{{ self._TemplateReference__context }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
]


@pytest.mark.parametrize("attack", SSTI)
def test_a_merchant_template_with_an_ssti_attempt_is_rejected(
    make_system: Callable[..., System], sqlite_url: str, attack: str
) -> None:
    system = h.acme(make_system, sqlite_url)
    response = system.admin.put(
        TEMPLATE, json={"subject": "Shipped", "text": f"Hello\n{attack}\n"}, headers=system.auth()
    )
    assert response.status_code == 422, response.get_json()
    assert system.admin.get(TEMPLATE, headers=system.auth()).get_json()["source"] == "default"


def test_template_syntax_errors_and_undefined_names_are_422_with_line_numbers(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = h.acme(make_system, sqlite_url)
    response = system.admin.put(
        TEMPLATE,
        json={"subject": "Shipped", "text": "Hello\n\n{% if order.ref %}\nno end"},
        headers=system.auth(),
    )
    assert response.status_code == 422
    body = response.get_json()
    assert "line" in body["fields"]["text"], body
    assert any(e.get("line") for e in body["errors"])

    response = system.admin.put(
        TEMPLATE, json={"subject": "Shipped", "text": "Hi\n{{ customer.nickname }}"}, headers=system.auth()
    )
    assert response.status_code == 422
    assert response.get_json()["fields"]["text"].startswith("line 2")
    sms = system.admin.put(
        "/api/merchants/acme/templates/delivered/sms", json={"text": "x" * 1700}, headers=system.auth()
    )
    assert sms.status_code == 422, "over 10 SMS segments"


#: The email template previewed, and the one saved and then used for a real email.
PREVIEWED = {
    "subject": "{{ merchant.name }}: {{ order.ref }} shipped",
    "text": "Hi {{ customer.first_name }}, track at {{ shipment.tracking_url }}",
    "html": "<p>Hi {{ customer.first_name }}</p>",
}
SAVED = {
    "subject": "{{ merchant.name }} parcel {{ order.ref }} is on its way",
    "text": "Hey {{ customer.first_name }}! Follow it: {{ shipment.tracking_url }}\n",
    "html": '<h1>Hey {{ customer.first_name }}</h1><a href="{{ shipment.tracking_url }}">follow</a>',
}


def test_preview_renders_sample_data_without_saving(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = h.acme(make_system, sqlite_url)
    response = system.admin.post(TEMPLATE + "/preview", json=PREVIEWED, headers=system.auth())
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["subject"].startswith("Acme Inc: ")
    assert "track at http" in body["text"]
    assert body["html"].startswith("<p>Hi ")
    default = system.admin.post(TEMPLATE + "/preview", json={}, headers=system.auth()).get_json()
    assert "Acme Inc" in default["subject"]
    sms = system.admin.post(
        "/api/merchants/acme/templates/delivered/sms/preview", json={}, headers=system.auth()
    ).get_json()
    assert sms["segments"] >= 1 and sms["encoding"] in ("GSM-7", "UCS-2", "gsm7", "ucs2")
    assert system.admin.get(TEMPLATE, headers=system.auth()).get_json()["source"] == "default"


def test_a_saved_merchant_template_is_used_for_the_next_real_email(
    make_system: Callable[..., System], database_url: str
) -> None:
    with _acme(make_system, database_url) as (system, merchant, smtp, twilio):
        response = system.admin.put(TEMPLATE, json=SAVED, headers=system.auth())
        assert response.status_code == 201, response.get_json()
        sms = system.admin.put(
            "/api/merchants/acme/templates/delivered/sms",
            json={"text": "{{ order.ref }} is here, {{ customer.first_name }}!"},
            headers=system.auth(),
        )
        assert sms.status_code == 201, sms.get_json()
        system.post(merchant, LABEL)
        system.drain()
        system.post(merchant, DELIVERED)
        system.drain()
        subjects = [str(m.message["Subject"]) for m in smtp.messages]
        shipped = next((m for m in smtp.messages if "on its way" in str(m.message["Subject"])), None)
        assert shipped is not None, subjects
        assert shipped.message["Subject"] == "Acme Inc parcel 1001 is on its way"
        assert h.text_part(shipped).startswith("Hey Jane! Follow it: https://tools.usps.com/")
        assert "<h1>Hey Jane</h1>" in h.html_part(shipped)
        assert [m["body"] for m in twilio.messages] == ["1001 is here, Jane!"]
        delivered = [m for m in smtp.messages if "delivered" in str(m.message["Subject"])]
        assert len(delivered) == 1, "kinds without a merchant template keep the default"


def test_a_customer_name_with_markup_is_escaped_in_the_real_html_email(
    make_system: Callable[..., System], database_url: str
) -> None:
    with _acme(make_system, database_url, name="<script>alert(1)</script> Doe") as (
        system,
        merchant,
        smtp,
        _,
    ):
        system.post(merchant, LABEL)
        system.drain()
        [mail] = smtp.messages
        html = h.html_part(mail)
        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_email_unsubscribe_link_confirms_then_records_the_opt_out(
    make_system: Callable[..., System], database_url: str
) -> None:
    with _acme(make_system, database_url) as (system, merchant, smtp, twilio):
        system.post(merchant, LABEL)
        system.drain()
        [mail] = smtp.messages
        header = str(mail.message["List-Unsubscribe"])
        assert header.startswith("<http://127.0.0.1:8000/unsubscribe/acme/") and header.endswith(">")
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = header[1:-1]
        assert url in h.text_part(mail) or url.replace("&", "&amp;") in h.html_part(mail)
        path = urlsplit(url).path

        page = system.web.get(path)
        assert page.status_code == 200
        assert "jane@example.com" in page.get_data(as_text=True)
        assert '<form method="post">' in page.get_data(as_text=True)
        system.drain()  # a GET (a mail scanner's prefetch) unsubscribes nobody
        system.post(merchant, OUT_FOR_DELIVERY)
        system.drain()
        assert [
            r.status for r in h.rows(system) if r.channel == "email" and r.kind == "out_for_delivery"
        ] == ["sent"]

        tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
        assert system.web.post(tampered).status_code in (400, 401, 403)
        other = path.replace("/acme/", "/other/")
        assert system.web.get(other).status_code == 404

        done = system.web.post(path)
        assert done.status_code == 200
        assert "unsubscribed" in done.get_data(as_text=True).lower()
        system.drain()
        system.post(merchant, DELIVERED)
        system.drain()
        row = next(r for r in h.rows(system) if r.channel == "email" and r.kind == "delivered")
        assert row.status == "suppressed" and "opted out" in (row.error or "")
        assert len([m for m in smtp.messages if m.rcpt_tos == ["jane@example.com"]]) == 2
        assert [r.status for r in h.rows(system) if r.channel == "sms" and r.kind == "delivered"] == ["sent"]


def test_without_smtp_or_twilio_the_rendered_messages_are_in_the_outbox(
    make_system: Callable[..., System], database_url: str
) -> None:
    """`make run` defaults: no PARCELHOOK_SMTP_URL, no Twilio credentials."""
    system = make_system(database_url)
    merchant = system.create_merchant("acme", **h.merchant_profile())
    h.register_order(system, "1001", email="jane@example.com", phone="+15551230001")
    system.start_worker()
    for body in scenario("delivered"):
        system.post(merchant, body)
        system.drain()
    response = system.admin.get("/api/outbox?merchant=acme", headers=system.auth())
    assert response.status_code == 200
    messages = response.get_json()["messages"]
    got = sorted((m["channel"], m["kind"]) for m in messages)
    assert got == sorted(
        [
            ("email", "shipped"),
            ("email", "out_for_delivery"),
            ("email", "delivered"),
            ("sms", "out_for_delivery"),
            ("sms", "delivered"),
        ]
    )
    for m in messages:
        assert m["status"] == "sent"
        assert "9205590164917312751089" in m["text"]
        if m["channel"] == "email":
            assert m["to"] == "jane@example.com" and m["from"] == h.EMAIL_FROM
            assert m["subject"] and m["html"] and "<html" in m["html"].lower()
            assert m["headers"]["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/acme/")
        else:
            assert m["to"] == "+15551230001" and m["from"] == h.SMS_FROM and m["html"] is None
    assert system.admin.get("/api/outbox", headers=system.auth()).status_code == 200
    assert system.admin.get("/api/outbox").status_code == 401
    assert system.admin.get("/api/outbox?limit=0", headers=system.auth()).status_code == 422


def test_a_preview_body_that_is_not_an_object_is_422(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url)
    system.create_merchant()
    response = system.admin.post(
        "/api/merchants/acme/templates/shipped/email/preview", json=[1, 2], headers=system.auth()
    )
    assert response.status_code == 422
    assert "body" in response.get_json()["fields"]
