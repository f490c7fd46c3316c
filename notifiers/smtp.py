"""SMTP email channel (``PARCELHOOK_SMTP_URL``).

``smtp://user:pass@host:port`` plain (port 25 by default), ``smtp://…?starttls=1`` upgrades with
STARTTLS (port 587 by default), ``smtps://…`` implicit TLS (port 465 by default). Username and
password are URL-decoded. ``?timeout=10`` sets the socket timeout (seconds).

Error mapping (docs/architecture.md, Layers): 4xx replies, connection errors and timeouts are
:class:`TransientChannelError`; 5xx replies (refused recipient/sender/data, 535 auth failure)
are :class:`PermanentChannelError`, with the SMTP code.
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from .channel import (
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
    UncertainDeliveryError,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # what smtplib.SMTP.send accepts (typeshed only)

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def message_id_for(idempotency_key: str) -> str:
    """Deterministic Message-ID: a retry of the same notification carries the same id."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@parcelhook>"


#: The email library's own guard (Python ≥ 3.11.10/3.12.5) refuses to *write* a header that
#: would break the header block; older versions only refuse line breaks inside a value, not a
#: trailing one, hence also :func:`_header_safe`.
_POLICY = (
    email.policy.default.clone(verify_generated_headers=True)
    if hasattr(email.policy.default, "verify_generated_headers")
    else email.policy.default
)


def _header_safe(name: str, value: str) -> str:
    """``value`` unchanged, or PermanentChannelError when it holds a line break (CR, LF or any
    other Unicode line boundary, trailing ones included) or NUL: a header must never end early
    and let the rest of the message be read as more headers or as the body. Merchant and
    customer fields are validated on the way in; this is defence in depth for older rows."""
    if "".join(value.splitlines()) != value or "\x00" in value:
        raise PermanentChannelError(
            f"the {name} header would contain a line break or NUL; not sent", code="invalid_header"
        )
    return value


def build_email(msg: OutgoingMessage, *, default_sender: str | None = None) -> EmailMessage:
    """The MIME message for ``msg`` (multipart/alternative when there is HTML). No I/O.

    PermanentChannelError (code ``invalid_header``) when a header value could break the header
    block or the email library refuses it: retrying would build the same message."""
    sender = msg.sender or default_sender
    if not sender:
        raise PermanentChannelError("no sender address configured for email", code=None)
    headers = [("From", sender), ("To", msg.to), ("Subject", msg.subject or "")]
    headers += [
        ("Date", formatdate(localtime=False, usegmt=True)),
        ("Message-ID", message_id_for(msg.idempotency_key)),
    ]
    if msg.reply_to:
        headers.append(("Reply-To", msg.reply_to))
    if msg.list_unsubscribe:
        headers += [
            ("List-Unsubscribe", f"<{msg.list_unsubscribe}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    headers.append(("Auto-Submitted", "auto-generated"))
    if msg.test:
        headers.append(("X-Parcelhook-Test", "1"))
    message = EmailMessage(policy=_POLICY)
    try:
        for name, value in headers:
            message[name] = _header_safe(name, value)
        message.set_content(msg.text)
        if msg.html:
            message.add_alternative(msg.html, subtype="html")
        message.as_bytes()  # the library's own checks on what would be written
    except (ValueError, email.errors.MessageError) as exc:
        raise PermanentChannelError(
            f"the email library refused the message: {exc}", code="invalid_header"
        ) from None
    return message


def _code(value: object) -> str | None:
    return str(value) if isinstance(value, int) and value > 0 else None


def _classify(code: int, message: str) -> TransientChannelError | PermanentChannelError:
    if 500 <= code < 600:
        return PermanentChannelError(message, code=str(code))
    return TransientChannelError(message, code=_code(code))


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class SmtpChannel:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        starttls: bool = False,
        timeout_s: float = 15.0,
        default_sender: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or (465 if implicit_tls else 587 if starttls else 25)
        self.username = username
        self._password = password  # never logged, never in repr
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.default_sender = default_sender
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return (
            f"SmtpChannel({scheme}://{user}{self.host}:{self.port}{'?starttls=1' if self.starttls else ''})"
        )

    @classmethod
    def from_url(
        cls, url: str, *, default_sender: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> SmtpChannel:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP URL has no host")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "").lower() in _TRUE
        return cls(
            parts.hostname,
            parts.port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=scheme == "smtps",
            starttls=starttls and scheme == "smtp",
            timeout_s=float(query.get("timeout", 15.0)),
            default_sender=default_sender,
            ssl_context=ssl_context,
        )

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        conn: smtplib.SMTP
        if self.implicit_tls:
            conn = smtplib.SMTP_SSL(
                self.host,
                self.port,
                timeout=self.timeout_s,
                context=context,
                local_hostname=self.local_hostname,
            )
        else:
            conn = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout_s, local_hostname=self.local_hostname
            )
        try:
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=context)
                conn.ehlo()
            if self.username is not None:
                conn.login(self.username, self._password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, msg: OutgoingMessage) -> SendResult:
        email = build_email(msg, default_sender=self.default_sender)
        message_id = str(email["Message-ID"])
        body_sent = False
        try:
            conn = self._connect()
            real_send = conn.send

            def send_and_note(s: ReadableBuffer | str) -> None:  # smtplib.SMTP.send's signature
                nonlocal body_sent
                real_send(s)
                if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):  # smtplib's DATA body
                    body_sent = True  # the point of no return: only the server's 250 is missing

            conn.send = send_and_note  # type: ignore[method-assign]
            try:
                refused = conn.send_message(email)
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        except smtplib.SMTPRecipientsRefused as exc:
            # every recipient refused: {addr: (code, msg)}
            code, text = next(iter(exc.recipients.values()), (0, b""))
            raise _classify(code, f"recipient refused: {code} {_text(text)}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise _classify(exc.smtp_code, f"authentication failed: {exc.smtp_code}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _classify(
                exc.smtp_code, f"sender refused: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPResponseException as exc:  # SMTPDataError, HELO errors, etc.
            raise _classify(exc.smtp_code, f"SMTP error: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentChannelError(f"SMTP server does not support a required feature: {exc}") from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError) as exc:
            if body_sent:
                raise UncertainDeliveryError(f"SMTP server gave no answer after the message: {exc}") from None
            if isinstance(exc, ssl.SSLError):
                raise TransientChannelError(f"SMTP TLS error: {exc.reason or exc}") from None
            raise TransientChannelError(f"SMTP connection problem: {exc}") from None
        except smtplib.SMTPException as exc:
            raise TransientChannelError(f"SMTP error: {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, f"recipient refused: {code} {_text(text)}")
        log.info("email sent", extra={"message_id": message_id})
        return SendResult(provider_id=message_id)
