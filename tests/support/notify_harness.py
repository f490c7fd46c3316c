"""Helpers for the notification integration tests: a System wired to a real SMTP server and a
local Twilio-compatible server, plus small polling/query helpers.

The harness only wraps the integration ``System`` (tests/integration/conftest.py); it never
switches verification off: Shippo bodies are posted with the merchant's token, Twilio callbacks
are signed with the twilio library's ``RequestValidator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from twilio.request_validator import RequestValidator  # re-exported for tests

from store.schema import notifications
from tests.support.smtp_server import ReceivedMessage, SmtpServer
from tests.support.twilio_server import TwilioServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-token-9f8e7d"
SMS_FROM = "+15005550006"
ALERTS = "ops@acme.example"
EMAIL_FROM = "ship@acme.example"
SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret"


@dataclass(frozen=True)
class Row:
    id: int
    kind: str
    channel: str
    audience: str
    status: str
    to: str | None
    locale: str | None
    error: str | None
    error_code: str | None
    provider_id: str | None
    attempts: int
    key: str


def rows(system: Any, *, policy_suppressed: bool = False) -> list[Row]:
    """Notification rows, oldest first. Rows the policy recorded as never to be sent (kind off
    for a channel, no contact, not opted in) are left out unless ``policy_suppressed``."""
    from workers.intents import SUPPRESSION_REASONS

    with system.database.read() as conn:
        result = conn.execute(notifications.select().order_by(notifications.c.id)).all()
    return [
        Row(
            r.id,
            r.kind,
            r.channel,
            r.audience,
            r.status,
            r.to_address,
            r.locale,
            r.error,
            r.error_code,
            r.provider_id,
            r.attempts,
            r.idempotency_key,
        )
        for r in result
        if policy_suppressed or not (r.status == "suppressed" and r.error in SUPPRESSION_REASONS.values())
    ]


def sms_row(system: Any, kind: str) -> Row:
    """The one SMS notification row of ``kind``."""
    [row] = [r for r in rows(system) if r.channel == "sms" and r.kind == kind]
    return row


def delayed_messages(system: Any, queue: str = "notifications") -> list[dict[str, Any]]:
    """Messages parked on the broker's delay queue (dramatiq's ``<queue>.DQ``)."""
    import json

    client = system.broker.client
    name = f"{system.broker.namespace}:{queue}.DQ.msgs"
    return [json.loads(v) for v in client.hvals(name)]


@contextmanager
def channels() -> Iterator[tuple[SmtpServer, TwilioServer]]:
    """A real SMTP server (with AUTH) and a local Twilio-compatible server, both on 127.0.0.1."""
    with (
        SmtpServer(username=SMTP_USER, password=SMTP_PASSWORD) as smtp,
        TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as twilio,
    ):
        yield smtp, twilio


@contextmanager
def wired(make_system: Any, url: str) -> Iterator[tuple[Any, SmtpServer, TwilioServer]]:
    """A system on ``url`` whose email goes to a real SMTP server and whose SMS go to the
    Twilio-compatible server (:func:`channels`): the system and both servers."""
    with channels() as (smtp, twilio):
        yield make_system(url, **channel_overrides(smtp, twilio)), smtp, twilio


def channel_overrides(smtp: SmtpServer, twilio: TwilioServer) -> dict[str, Any]:
    return {
        "smtp_url": smtp.url,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_api_url": twilio.url,
    }


def merchant_profile(**overrides: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "email_from": EMAIL_FROM,
        "sms_from": SMS_FROM,
        "alert_email": ALERTS,
        "order_ref_pattern": r"Order (\d+)",
    }
    profile.update(overrides)
    return profile


def register_order(
    system: Any,
    ref: str,
    *,
    name: str = "Jane Doe",
    email: str | None = None,
    phone: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    sms: bool = True,
    email_on: bool = True,
    merchant: str = "acme",
) -> None:
    customer: dict[str, Any] = {"name": name}
    if email:
        customer["email"] = email
    if phone:
        customer["phone"] = phone
    if locale:
        customer["locale"] = locale
    if timezone:
        customer["timezone"] = timezone
    response = system.admin.put(
        f"/api/merchants/{merchant}/orders/{ref}",
        json={"customer": customer, "notify": {"email": email_on, "sms": sms}},
        headers=system.auth(),
    )
    assert response.status_code in (200, 201), response.get_json()


def acme(make_system: Any, url: str) -> Any:
    """A system (no channels, no worker) with merchant ``acme`` (:func:`merchant_profile`)."""
    system = make_system(url)
    system.create_merchant("acme", **merchant_profile())
    return system


def acme_for_jane(
    make_system: Any,
    url: str,
    smtp: SmtpServer,
    twilio: TwilioServer,
    *,
    phone: str = "+15551230001",
    **customer: Any,
) -> tuple[Any, dict[str, Any]]:
    """A system on both channels with merchant ``acme`` (:func:`merchant_profile`), order 1001
    for jane@example.com and ``phone`` (``customer``: more :func:`register_order` arguments),
    and a running worker. Returns the system and the merchant."""
    system = make_system(url, **channel_overrides(smtp, twilio))
    merchant = system.create_merchant("acme", **merchant_profile())
    register_order(system, "1001", email="jane@example.com", phone=phone, **customer)
    system.start_worker()
    return system, merchant


def labelled_for_jane(
    make_system: Any, url: str, smtp: SmtpServer, twilio: TwilioServer, *, phone: str
) -> tuple[Any, dict[str, Any]]:
    """:func:`acme_for_jane`, and the label of the "delivered" scenario processed (the
    ``shipped`` email and SMS are out). Returns the system and the merchant."""
    from tests.fixtures.shippo import scenario

    system, merchant = acme_for_jane(make_system, url, smtp, twilio, phone=phone)
    system.post(merchant, scenario("delivered")[0])
    system.drain()
    return system, merchant


def sign_twilio(system: Any, path: str, form: dict[str, str], *, token: str = AUTH_TOKEN) -> dict[str, str]:
    url = system.settings.public_url.rstrip("/") + path
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def post_twilio(
    system: Any, path: str, form: dict[str, str], *, token: str = AUTH_TOKEN, signature: str | None = None
) -> Any:
    headers = sign_twilio(system, path, form, token=token)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return system.web.post(
        path, data=urlencode(form), headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}
    )


def text_part(msg: ReceivedMessage) -> str:
    part = msg.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(msg: ReceivedMessage) -> str:
    part = msg.message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def by_status(system: Any) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows(system):
        out.setdefault(r.status, []).append((r.channel, r.kind))
    return out


def count(system: Any, **where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(notifications)
    for column, value in where.items():
        query = query.where(getattr(notifications.c, column) == value)
    with system.database.read() as conn:
        return int(conn.execute(query).scalar_one())
