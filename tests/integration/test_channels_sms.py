"""TwilioSmsChannel (the official twilio client) against a local Twilio-compatible server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from notifiers.channel import OutgoingMessage, PermanentChannelError, TransientChannelError
from notifiers.sms import TwilioSmsChannel
from tests.support.messages import NORTHWIND_SMS
from tests.support.twilio_server import TwilioServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-token-9f8e7d"
SERVICE_SID = "MG" + "fedcba9876543210" * 2


def _sms(**overrides: Any) -> OutgoingMessage:
    return replace(NORTHWIND_SMS, **overrides)


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def channel(twilio: TwilioServer) -> TwilioSmsChannel:
    return TwilioSmsChannel(ACCOUNT_SID, AUTH_TOKEN, api_url=twilio.url, timeout_s=5)


def test_sms_sent_from_a_number(twilio: TwilioServer, channel: TwilioSmsChannel) -> None:
    result = channel.send(_sms())

    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_id)
    [req] = twilio.requests
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert req.auth_ok
    assert req.form["To"] == "+15558675310"
    assert req.form["From"] == "+15005550006"
    assert "MessagingServiceSid" not in req.form
    assert req.form["Body"].startswith("Northwind Goods: your order 1042")
    assert req.form["StatusCallback"] == "https://hooks.example/webhooks/twilio/northwind/status"
    assert twilio.messages[0]["sid"] == result.provider_id


def test_sms_sent_through_a_messaging_service(twilio: TwilioServer, channel: TwilioSmsChannel) -> None:
    channel.send(_sms(sender=SERVICE_SID, status_callback=None))
    [req] = twilio.requests
    assert req.form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in req.form
    assert "StatusCallback" not in req.form


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limit_and_server_errors_are_transient(
    twilio: TwilioServer, channel: TwilioSmsChannel, status: int
) -> None:
    twilio.fail_next(status)
    with pytest.raises(TransientChannelError):
        channel.send(_sms())
    assert channel.send(_sms()).provider_id.startswith("SM")


def test_invalid_number_21211_is_permanent_with_code(twilio: TwilioServer, channel: TwilioSmsChannel) -> None:
    with pytest.raises(PermanentChannelError) as info:
        channel.send(_sms(to="not-a-number"))
    assert info.value.code == "21211"


def test_scripted_21211_is_permanent(twilio: TwilioServer, channel: TwilioSmsChannel) -> None:
    twilio.fail_next(400, code=21211)
    with pytest.raises(PermanentChannelError) as info:
        channel.send(_sms())
    assert info.value.code == "21211"


def test_opted_out_recipient_21610_is_permanent(twilio: TwilioServer, channel: TwilioSmsChannel) -> None:
    twilio.opted_out.add("+15558675310")
    with pytest.raises(PermanentChannelError) as info:
        channel.send(_sms())
    assert info.value.code == "21610"
    assert twilio.messages == []


def test_bad_credentials_are_permanent_and_token_not_leaked(twilio: TwilioServer) -> None:
    channel = TwilioSmsChannel(ACCOUNT_SID, "wrong-token", api_url=twilio.url, timeout_s=5)
    with pytest.raises(PermanentChannelError) as info:
        channel.send(_sms())
    assert info.value.code == "20003"
    assert "wrong-token" not in str(info.value)
    assert "wrong-token" not in repr(channel)


def test_unreachable_api_is_transient() -> None:
    server = TwilioServer(ACCOUNT_SID, AUTH_TOKEN).start()
    url = server.url
    server.stop()
    channel = TwilioSmsChannel(ACCOUNT_SID, AUTH_TOKEN, api_url=url, timeout_s=2)
    with pytest.raises(TransientChannelError):
        channel.send(_sms())


def test_api_url_with_trailing_slash(twilio: TwilioServer) -> None:
    channel = TwilioSmsChannel(ACCOUNT_SID, AUTH_TOKEN, api_url=twilio.url + "/", timeout_s=5)
    channel.send(_sms())
    assert twilio.requests[0].path.startswith("/2010-04-01/")


def test_no_answer_after_the_request_was_sent_is_uncertain_not_transient() -> None:
    """Twilio may have queued the SMS before the answer was lost: never retried blindly."""
    import socket
    import threading

    from notifiers.channel import UncertainDeliveryError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []

    def swallow() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        conn.recv(65536)  # read the request, never answer

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    try:
        channel = TwilioSmsChannel(
            ACCOUNT_SID, AUTH_TOKEN, api_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=1
        )
        with pytest.raises(UncertainDeliveryError):
            channel.send(_sms())
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
        thread.join(5)
