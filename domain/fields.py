"""Field readers shared by the payload model: tolerant text, flags, timestamps, carrier hosts.

Everything here is lenient where Shippo is loose (blank strings read as None, numbers as text) and
precise where it must fail: a PayloadError names the field and the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit


class PayloadError(ValueError):
    """A body or field that cannot be understood; the message is safe to return as a 400."""


# tracking_url_provider host -> carrier token, used when the rate is only an id.
# (needle, carrier, whole-domain match?) whole-domain needles must match the host or a parent domain.
CARRIER_HOSTS: tuple[tuple[str, str, bool], ...] = (
    ("usps.com", "usps", True),
    ("ups.com", "ups", True),
    ("fedex.com", "fedex", True),
    ("dhl", "dhl_express", False),
    ("canadapost", "canada_post", False),
    ("royalmail", "royal_mail", False),
    ("purolator", "purolator", False),
)


def require_text(data: Mapping[str, Any], name: str, where: str = "data") -> str:
    value = data.get(name)
    if value is None or value == "":
        raise PayloadError(f"'{where}.{name}' is missing")
    if not isinstance(value, str):
        raise PayloadError(f"'{where}.{name}' must be a string")
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_timestamp(s: object) -> datetime | None:
    """ISO 8601 (with or without Z/offset/millis) to an aware UTC datetime; None for null/''.

    Naive timestamps (Shippo test mode) are UTC. Raises PayloadError for anything else.
    """
    if s is None or s == "":
        return None
    if isinstance(s, datetime):
        moment = s
    elif isinstance(s, str):
        try:
            moment = datetime.fromisoformat(s.strip())
        except ValueError:
            raise PayloadError(f"not an ISO 8601 timestamp: {s[:40]!r}") from None
    else:
        raise PayloadError(f"not an ISO 8601 timestamp: {type(s).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def carrier_from_url(url: str | None) -> str | None:
    """Carrier token from a carrier tracking page URL (CARRIER_HOSTS), or None."""
    if not url:
        return None
    try:
        host = (urlsplit(url if "//" in url else "//" + url).hostname or "").lower()
    except ValueError:
        return None
    for needle, carrier, whole_domain in CARRIER_HOSTS:
        if whole_domain:
            if host == needle or host.endswith("." + needle):
                return carrier
        elif needle in host:
            return carrier
    return None


def messages(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    texts: list[str] = []
    for item in raw:
        line = opt_text(item.get("text")) if isinstance(item, dict) else opt_text(item)
        if line:
            texts.append(line)
    return tuple(texts)


def timestamp(data: Mapping[str, Any], name: str, where: str) -> datetime | None:
    try:
        return parse_timestamp(data.get(name))
    except PayloadError as exc:
        raise PayloadError(f"'{where}.{name}' is {exc}") from None


def lenient_timestamp(value: Any) -> datetime | None:
    """For informational fields (eta): garbage reads as unknown rather than rejecting the event."""
    try:
        return parse_timestamp(value)
    except PayloadError:
        return None


def reference(value: Any) -> str | None:
    """An object reference: an id string, or an object carrying object_id."""
    if isinstance(value, dict):
        value = value.get("object_id")
    return opt_text(value)


def opt_text(value: Any) -> str | None:
    """Strings trimmed (empty -> None), numbers as text, anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def as_text(value: Any) -> str:
    return opt_text(value) or ""


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return False
