"""A real SMTP server on 127.0.0.1 for integration tests (aiosmtpd ``Controller``).

    with SmtpServer(username="mailer", password="s3cret") as smtp:
        channel = SmtpChannel.from_url(smtp.url)          # smtp://mailer:s3cret@127.0.0.1:port
        smtp.reply_next("rcpt", "451 4.3.0 Try again later")   # next RCPT answers 451
        smtp.reply_next("data", "550 5.7.1 Rejected")          # next DATA answers 550

TLS: ``SmtpServer(tls="starttls")`` or ``tls="implicit"`` uses a self-signed certificate made
with the ``openssl`` CLI (:func:`self_signed_cert`); clients verify it with ``smtp.client_ssl_context()``.

AUTH is offered without TLS (``auth_require_tls=False``) and enforced at ``MAIL FROM`` (530)
instead of aiosmtpd's ``auth_required``, which emits a UserWarning that ``-W error`` would turn
into a failed connection.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for CN/SAN 127.0.0.1 + localhost, valid one day, made with ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl CLI not found")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.server.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        reply = self.server._take("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.server._take("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.data_delay_s:  # the message is in, the 250 comes late (or after the client left)
            await asyncio.sleep(self.server.data_delay_s)
        reply = self.server._take("data")
        if reply:
            return reply
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.server.messages.append(
            ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), raw, msg, login)
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: str | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls must be None, 'starttls' or 'implicit'")
        self.username = username
        self.password = password
        self.tls = tls
        self.cert_dir = cert_dir
        self.cert: Path | None = None
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self._replies: dict[str, deque[str]] = {"mail": deque(), "rcpt": deque(), "data": deque()}
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = 0

    #: seconds to wait before answering DATA (simulates a server slower than the client's timeout)
    data_delay_s: float = 0.0

    # -- scripting ------------------------------------------------------------------------------
    def reply_next(self, stage: str, reply: str, *, times: int = 1) -> None:
        """Answer the next ``times`` ``stage`` (``mail``/``rcpt``/``data``) commands with ``reply``."""
        with self._lock:
            self._replies[stage].extend([reply] * times)

    def _take(self, stage: str) -> str | None:
        with self._lock:
            queue = self._replies[stage]
            return queue.popleft() if queue else None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.username is not None
            and secrets.compare_digest(auth_data.login, self.username.encode())
            and secrets.compare_digest(auth_data.password, (self.password or "").encode())
        )
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        creds = (
            f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@" if self.username else ""
        )
        query = "?starttls=1" if self.tls == "starttls" else ""
        return f"{scheme}://{creds}127.0.0.1:{self.port}{query}"

    def client_ssl_context(self) -> ssl.SSLContext:
        assert self.cert is not None, "server has no TLS"
        return ssl.create_default_context(cafile=str(self.cert))

    def start(self) -> Self:
        server_ctx: ssl.SSLContext | None = None
        if self.tls:
            if self.cert_dir is None:
                raise ValueError("TLS needs cert_dir (e.g. pytest's tmp_path)")
            cert, key = self_signed_cert(self.cert_dir)
            self.cert = cert
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(str(cert), str(key))
        self.port = _free_port()
        kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "authenticator": self._authenticate if self.username is not None else None,
            "auth_require_tls": False,
        }
        if self.tls == "implicit":
            kwargs["ssl_context"] = server_ctx
        elif self.tls == "starttls":
            kwargs["tls_context"] = server_ctx
            kwargs["require_starttls"] = True
        self._controller = Controller(_Handler(self), **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
