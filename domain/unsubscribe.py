"""Signed unsubscribe tokens: ``<b64 address>.<hmac>``, verifiable without a database lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(key: bytes, merchant_slug: str, address: str) -> str:
    payload = _b64(address.lower().encode())
    mac = hmac.new(key, f"{merchant_slug}:{payload}".encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{_b64(mac)}"


def read_token(key: bytes, merchant_slug: str, token: str) -> str | None:
    """The address the token was made for, or None when it was not made with ``key``."""
    payload, _, mac = token.partition(".")
    if not payload or not mac:
        return None
    expected = hmac.new(key, f"{merchant_slug}:{payload}".encode(), hashlib.sha256).digest()[:16]
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        return _unb64(payload).decode()
    except (ValueError, UnicodeDecodeError):
        return None
