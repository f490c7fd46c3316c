"""Channel building blocks without I/O: URL parsing, MIME building, the test twin."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from notifiers.channel import ChannelAdapter, OutgoingMessage, PermanentChannelError, TransientChannelError
from notifiers.sms import TwilioSmsChannel, is_messaging_service_sid
from notifiers.smtp import SmtpChannel, build_email, message_id_for
from notifiers.testing import RecordingChannel
from tests.support.messages import NORTHWIND_EMAIL

#: The idempotency key of the messages here, unless a test gives one.
MESSAGE = replace(NORTHWIND_EMAIL, idempotency_key="k1")


def _msg(**overrides: Any) -> OutgoingMessage:
    return replace(MESSAGE, **overrides)


def test_smtp_url_parsing() -> None:
    plain = SmtpChannel.from_url("smtp://user%40x:p%3Ass@mail.example:2525")
    assert (plain.host, plain.port, plain.username, plain.implicit_tls, plain.starttls) == (
        "mail.example",
        2525,
        "user@x",
        False,
        False,
    )
    assert "p:ss" not in repr(plain) and "p%3Ass" not in repr(plain)
    assert SmtpChannel.from_url("smtp://mail.example?starttls=1").port == 587
    assert SmtpChannel.from_url("smtp://mail.example?starttls=1").starttls
    tls = SmtpChannel.from_url("smtps://u:p@mail.example")
    assert (tls.port, tls.implicit_tls, tls.starttls) == (465, True, False)
    assert SmtpChannel.from_url("smtp://mail.example").username is None
    with pytest.raises(ValueError):
        SmtpChannel.from_url("http://mail.example")


def test_message_id_is_deterministic() -> None:
    assert message_id_for("k1") == message_id_for("k1") != message_id_for("k2")
    assert build_email(_msg())["Message-ID"] == message_id_for("k1")


def test_email_without_sender_is_permanent() -> None:
    with pytest.raises(PermanentChannelError):
        build_email(_msg(sender=None))
    assert build_email(_msg(sender=None), default_sender="d@example.com")["From"] == "d@example.com"


def test_messaging_service_sid_detection() -> None:
    assert is_messaging_service_sid("MG" + "a" * 32)
    assert not is_messaging_service_sid("+15005550006")
    assert not is_messaging_service_sid("MG123")


def test_channels_satisfy_the_protocol() -> None:
    assert isinstance(RecordingChannel(), ChannelAdapter)
    assert isinstance(SmtpChannel("localhost"), ChannelAdapter)
    assert isinstance(
        TwilioSmsChannel("AC" + "0" * 32, "token", api_url="http://127.0.0.1:9"), ChannelAdapter
    )


def test_recording_channel_records_and_follows_its_script() -> None:
    ch = RecordingChannel("sms")
    ch.fail_next(
        TransientChannelError("rate limited", code="429"),
        None,
        PermanentChannelError("opted out", code="21610"),
    )
    with pytest.raises(TransientChannelError):
        ch.send(_msg())
    assert ch.send(_msg(idempotency_key="k2")).provider_id == "sms-1"
    with pytest.raises(PermanentChannelError) as info:
        ch.send(_msg())
    assert info.value.code == "21610"
    ch.send(_msg(to="b@example.com"))
    assert ch.keys() == ["k2", "k1"]
    assert [m.to for m in ch.sent_to("b@example.com")] == ["b@example.com"]
    assert len(ch.attempts) == 4
    ch.fail_always(TransientChannelError("down"))
    with pytest.raises(TransientChannelError):
        ch.send(_msg())
