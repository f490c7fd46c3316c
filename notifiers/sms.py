"""Twilio SMS channel, using the official ``twilio`` client.

``api_url`` (``PARCELHOOK_TWILIO_API_URL``) replaces the scheme and host of every request the
client makes (``https://api.twilio.com/2010-04-01/...`` → ``<api_url>/2010-04-01/...``), via a
:class:`twilio.http.http_client.TwilioHttpClient` subclass: the client builds absolute URLs from
each domain's ``base_url`` and, with a region/edge set, rewrites the host, so rewriting at the HTTP
layer is the one place that catches all of them.

Error mapping: 429 and 5xx → transient; other 4xx (21211 invalid number, 21610 opted out,
21408 region disabled, 21614 not a mobile number, 20003 bad credentials…) → permanent, with the
Twilio code; connection errors/timeouts → transient.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from .channel import (
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
    UncertainDeliveryError,
)

log = logging.getLogger(__name__)


def is_messaging_service_sid(sender: str) -> bool:
    return sender.startswith("MG") and len(sender) == 34


class _RebasedHttpClient(TwilioHttpClient):
    """Sends every request to ``base_url`` instead of Twilio's own host."""

    def __init__(self, base_url: str, *, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("Twilio API URL must be an http(s) URL")
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path

    def request(  # twilio's own HttpClient.request signature (its subclass renames uri to url)
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(uri)
        rebased = urlunsplit(
            (self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment)
        )
        return super().request(method, rebased, params, data, headers, auth, timeout, allow_redirects)


def _classify(
    status: int | None, code: object, message: str
) -> TransientChannelError | PermanentChannelError:
    code_s = str(code) if code is not None else (str(status) if status else None)
    if status is not None and (status == 429 or status >= 500):
        return TransientChannelError(message, code=code_s)
    return PermanentChannelError(message, code=code_s)


def _request_may_have_arrived(exc: BaseException) -> bool:
    """False only when the connection was never made (refused, DNS, connect timeout): then
    Twilio cannot have the message. A read timeout or a dropped connection may come after
    Twilio accepted it."""
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return False
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        stack.extend(
            e
            for e in (current.__cause__, current.__context__, getattr(current, "reason", None))
            if isinstance(e, BaseException)
        )
    return True


class TwilioSmsChannel:
    name = "twilio"

    def __init__(
        self, account_sid: str, auth_token: str, *, api_url: str | None = None, timeout_s: float = 15.0
    ) -> None:
        http_client = (
            _RebasedHttpClient(api_url, timeout=timeout_s) if api_url else TwilioHttpClient(timeout=timeout_s)
        )
        self.account_sid = account_sid
        self.api_url = api_url
        # A non-empty environment mapping (an empty one falls back to os.environ) so TWILIO_EDGE /
        # TWILIO_REGION in the process environment never redirect our traffic: config.py owns settings.
        self._client = Client(
            account_sid, auth_token, http_client=http_client, environment={"PARCELHOOK": "1"}
        )

    def __repr__(self) -> str:
        return f"TwilioSmsChannel(account_sid={self.account_sid!r}, api_url={self.api_url!r})"

    def send(self, msg: OutgoingMessage) -> SendResult:
        if not msg.sender:
            raise PermanentChannelError("no SMS sender (number or messaging service SID) configured")
        kwargs: dict[str, Any] = {"to": msg.to, "body": msg.text}
        if is_messaging_service_sid(msg.sender):
            kwargs["messaging_service_sid"] = msg.sender
        else:
            kwargs["from_"] = msg.sender
        if msg.status_callback:
            kwargs["status_callback"] = msg.status_callback
        try:
            message = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise _classify(exc.status, exc.code, f"Twilio {exc.status}: {exc.code} {exc.msg}") from None
        except TwilioServiceException as exc:
            status = getattr(exc, "status", None)
            code = getattr(exc, "code", None)
            raise _classify(status, code, f"Twilio {status}: {code} {getattr(exc, 'title', '')}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            if _request_may_have_arrived(exc):
                raise UncertainDeliveryError(f"Twilio did not answer: {type(exc).__name__}") from None
            raise TransientChannelError(f"Twilio connection problem: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise TransientChannelError(f"Twilio request failed: {type(exc).__name__}") from None
        except TwilioException as exc:
            raise TransientChannelError(f"Twilio client error: {exc}") from None
        if not message.sid:
            raise TransientChannelError("Twilio answered without a message sid")
        log.info("sms sent", extra={"provider_id": message.sid})
        return SendResult(provider_id=message.sid)
