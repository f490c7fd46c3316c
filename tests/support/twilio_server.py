"""A local Twilio-compatible REST server for integration tests (wire-level, real HTTP).

Implements ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` the way Twilio does:
form-encoded ``To``/``From``/``MessagingServiceSid``/``Body``/``StatusCallback``, HTTP basic
auth, a 201 JSON message resource with ``sid`` ``SM`` + 32 hex. Scriptable failures.

    with TwilioServer(account_sid, auth_token) as tw:
        channel = TwilioSmsChannel(sid, token, api_url=tw.url)
        tw.fail_next(429)                     # next request answers 429
        tw.fail_next(400, code=21211)         # then a 21211
        tw.opted_out.add("+15005550009")      # this number always answers 21610
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.support.local_http import LocalHTTPServer, send_json

_MESSAGES = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
    21614: "'To' number is not a valid mobile number",
    20003: "Authentication Error - invalid username",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21606: "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]
    account_sid: str | None
    auth_ok: bool


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str | None
    retry_after: str | None = None


@dataclass
class TwilioServer(LocalHTTPServer):
    THREAD_NAME = "twilio-server"

    account_sid: str
    auth_token: str
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()

    # -- scripting -------------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        code: int | None = None,
        message: str | None = None,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        """The next ``times`` message requests answer ``status`` (with Twilio's error JSON)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, code, message, retry_after))

    # -- request handling ------------------------------------------------------------------------
    def _check_auth(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        path = h.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        account = parts[2] if len(parts) >= 3 and parts[:2] == ["2010-04-01", "Accounts"] else None
        auth_ok = self._check_auth(h.headers.get("Authorization"))
        with self._lock:
            self.requests.append(
                RecordedRequest(h.command, path, form, dict(h.headers.items()), account, auth_ok)
            )
        if not (h.command == "POST" and len(parts) == 4 and account and parts[3] == "Messages.json"):
            send_json(
                h,
                404,
                {
                    "code": 20404,
                    "message": f"The requested resource {path} was not found",
                    "more_info": "https://www.twilio.com/docs/errors/20404",
                    "status": 404,
                },
            )
            return
        if not auth_ok or account != self.account_sid:
            self._error(h, 401, 20003, None)
            return
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            self._error(h, failure.status, failure.code, failure.message, form.get("To", ""), headers)
            return
        to = form.get("To", "")
        if not to:
            self._error(h, 400, 21604, "A 'To' phone number is required.")
            return
        if not (form.get("From") or form.get("MessagingServiceSid")):
            self._error(h, 400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
            return
        if not to.startswith("+") or not to[1:].isdigit() or not 8 <= len(to) <= 16:
            self._error(h, 400, 21211, None, to)
            return
        if to in self.opted_out:
            self._error(h, 400, 21610, None, to)
            return
        send_json(h, 201, self._message_resource(form))

    def _message_resource(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        body = form.get("Body", "")
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") and not form.get("From") else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.messages.append({**resource, "status_callback": form.get("StatusCallback")})
        return resource

    def _error(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        code: int | None,
        message: str | None,
        to: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        code = (
            code
            if code is not None
            else {429: 20429, 401: 20003}.get(status, 20500 if status >= 500 else None)
        )
        text = message or _MESSAGES.get(code or 0, "Error").format(to=to)
        send_json(
            h,
            status,
            {
                "code": code,
                "message": text,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )
