"""``Shippo-Auth-Signature: t=<unix seconds>,v1=<hex>``, v1 = HMAC-SHA256(secret, "<t>.<raw body>").

Verified against the raw bytes before anything parses them; any configured secret may
match (rotation); compared in constant time; the timestamp must be inside the window.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from ingest.errors import BadSignature, StaleSignature

HEADER = "Shippo-Auth-Signature"
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also take '١٢٣' or 5,000 digits
SIGNATURE = re.compile(r"[0-9a-f]{64}")  # hex SHA-256; anything else can never match, so is no candidate


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value Shippo would send (used by `parcelhook replay`, tests and benchmarks)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            if not TIMESTAMP.fullmatch(value):
                raise BadSignature(f"{HEADER} has a timestamp that is not unix seconds: {value[:20]!r}")
            timestamp = int(value)
        elif key == "v1" and SIGNATURE.fullmatch(value.lower()):
            signatures.append(value.lower())
    if timestamp is None:
        raise BadSignature(f"{HEADER} has no t= timestamp")
    if not signatures:
        raise BadSignature(f"{HEADER} has no v1= signature of 64 hex digits")
    return timestamp, signatures


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, now: float, tolerance_s: int) -> None:
    if not header:
        raise BadSignature(f"missing {HEADER} header (this merchant requires HMAC signatures)")
    timestamp, given = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise StaleSignature(
            f"{HEADER} timestamp is {int(now - timestamp)} s away from now (window {tolerance_s} s)"
        )
    signed = f"{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.digest(secret.encode(), signed, "sha256").hex()
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            return
    raise BadSignature(f"{HEADER} does not match the body for any configured secret")
