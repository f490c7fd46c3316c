"""SmtpChannel against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from notifiers.channel import ChannelError, OutgoingMessage, PermanentChannelError, TransientChannelError
from notifiers.smtp import SmtpChannel, message_id_for
from tests.support.messages import NORTHWIND_EMAIL
from tests.support.smtp_server import SmtpServer


def _message(**overrides: Any) -> OutgoingMessage:
    return replace(NORTHWIND_EMAIL, **overrides)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(username="mailer", password="p@ss:word/1") as server:
        yield server


def test_email_arrives_multipart_with_message_id_from_key_and_unsubscribe_headers(smtp: SmtpServer) -> None:
    channel = SmtpChannel.from_url(smtp.url)
    result = channel.send(_message())

    assert result.provider_id == message_id_for("northwind:1042:shp_1:shipped:email")
    [received] = smtp.messages
    msg = received.message
    assert received.rcpt_tos == ["jane@example.com"]
    assert received.authenticated_as == "mailer"
    assert msg["Message-ID"] == result.provider_id
    assert msg["List-Unsubscribe"] == "<https://notify.northwind.example/u/3f9a>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Reply-To"] == "help@northwind.example"
    assert msg["Subject"] == "Your order 1042 has shipped"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and "Track: https://tools.usps.com" in text.get_content()
    assert html is not None and "<a href" in html.get_content()


def test_same_key_gives_same_message_id_different_key_another(smtp: SmtpServer) -> None:
    channel = SmtpChannel.from_url(smtp.url)
    a = channel.send(_message())
    b = channel.send(_message())
    c = channel.send(_message(idempotency_key="northwind:1042:shp_1:delivered:email"))
    assert a == b != c
    assert c.provider_id.startswith("<") and c.provider_id.endswith("@parcelhook>")


def test_text_only_email_is_not_multipart(smtp: SmtpServer) -> None:
    SmtpChannel.from_url(smtp.url).send(_message(html=None, list_unsubscribe=None, reply_to=None))
    msg = smtp.messages[0].message
    assert msg.get_content_type() == "text/plain"
    assert msg["List-Unsubscribe"] is None


def _refusal(
    smtp: SmtpServer, channel: SmtpChannel, stage: str, reply: str, error: type[ChannelError]
) -> str | None:
    """The code of the ``error`` that sending raises when ``smtp`` answers ``stage`` with ``reply`` once."""
    smtp.reply_next(stage, reply)
    with pytest.raises(error) as info:
        channel.send(_message())
    return info.value.code


def test_451_on_rcpt_is_transient_and_the_retry_succeeds(smtp: SmtpServer) -> None:
    channel = SmtpChannel.from_url(smtp.url)
    reply = "451 4.3.0 Mailbox temporarily unavailable"
    assert _refusal(smtp, channel, "rcpt", reply, TransientChannelError) == "451"
    assert channel.send(_message()).provider_id
    assert len(smtp.messages) == 1


def test_550_on_rcpt_is_permanent_with_code(smtp: SmtpServer) -> None:
    channel = SmtpChannel.from_url(smtp.url)
    assert _refusal(smtp, channel, "rcpt", "550 5.1.1 No such user", PermanentChannelError) == "550"
    assert smtp.messages == []


def test_554_on_data_is_permanent_and_451_on_data_transient(smtp: SmtpServer) -> None:
    channel = SmtpChannel.from_url(smtp.url)
    assert (
        _refusal(smtp, channel, "data", "554 5.7.1 Message rejected as spam", PermanentChannelError) == "554"
    )
    assert _refusal(smtp, channel, "data", "451 4.7.1 Greylisted", TransientChannelError) == "451"


def test_wrong_password_is_permanent_535_and_password_not_in_message(smtp: SmtpServer) -> None:
    url = smtp.url.replace("p%40ss%3Aword%2F1", "wrong-secret")
    with pytest.raises(PermanentChannelError) as info:
        SmtpChannel.from_url(url).send(_message())
    assert info.value.code == "535"
    assert "wrong-secret" not in str(info.value)
    assert "wrong-secret" not in repr(SmtpChannel.from_url(url))


def test_connection_refused_is_transient() -> None:
    server = SmtpServer().start()
    url = server.url
    server.stop()
    with pytest.raises(TransientChannelError):
        SmtpChannel.from_url(url + "?timeout=2").send(_message())


@pytest.mark.parametrize(
    ("tls", "expect"),
    [
        ("starttls", {"starttls": True, "implicit_tls": False}),
        ("implicit", {"starttls": False, "implicit_tls": True}),
    ],
    ids=["starttls", "implicit"],
)
def test_tls_with_self_signed_certificate(tmp_path: Path, tls: str, expect: dict[str, bool]) -> None:
    with SmtpServer(username="mailer", password="pw", tls=tls, cert_dir=tmp_path) as server:
        channel = SmtpChannel.from_url(server.url, ssl_context=server.client_ssl_context())
        assert {"starttls": channel.starttls, "implicit_tls": channel.implicit_tls} == expect
        channel.send(_message())
        assert len(server.messages) == 1


def test_untrusted_certificate_is_transient(tmp_path: Path) -> None:
    with SmtpServer(tls="implicit", cert_dir=tmp_path) as server:
        with pytest.raises(TransientChannelError):
            SmtpChannel.from_url(server.url).send(_message())
        assert server.messages == []


def test_no_answer_after_the_message_was_sent_is_uncertain_not_transient(smtp: SmtpServer) -> None:
    """The body is with the server; only its 250 is missing. A retry could deliver it twice."""
    from notifiers.channel import UncertainDeliveryError

    smtp.data_delay_s = 3.0
    with pytest.raises(UncertainDeliveryError):
        SmtpChannel.from_url(smtp.url + "?timeout=1").send(_message())
