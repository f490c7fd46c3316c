"""Field readers shared by the payload model: tolerant text, flags, timestamps, carrier hosts.

Everything here is lenient where Shippo is loose (blank strings read as None, numbers as text) and
precise where it must fail: a PayloadError names the field and the problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from domain.carriers import HOST_OWNERS, owner_of


class PayloadError(ValueError):
    """A body or field that cannot be understood; the message is safe to return as a 400."""


# --------------------------------------------------------------------------- what can be stored
#
# The receiver's 200 is a promise that the worker can store and process the event on SQLite and
# PostgreSQL alike. So every value read from a body is one of two kinds:
#
# * an IDENTIFIER (ids, carrier, tracking number, statuses, codes): it keys rows and dedupe, so it is
#   never altered — one that does not fit its column, or carries a control character, NUL or a lone
#   surrogate, is refused (PayloadError → 400 naming the field);
# * FREE TEXT (details, locations, messages, metadata, URLs): it is made storable — NUL and other
#   control characters removed, lone surrogates replaced by U+FFFD, and cut at its bound with a marker.
#
# The bounds are the columns' sizes in store/schema.py (a test keeps the two equal).

IDENTIFIER_LIMITS: Mapping[str, int] = {
    "event": 64,  # deliveries.event
    "carrier": 64,  # shipments.carrier
    "tracking_number": 128,  # shipments.tracking_number
    "transaction": 64,  # shipments.transaction_id (a label's object_id, a track's data.transaction)
    "scan_id": 64,  # shipment_scans.scan_id
    "status": 32,  # shipment_scans.status
    "substatus": 64,  # shipment_scans.substatus
}

TEXT_LIMITS: Mapping[str, int] = {
    "details": 2000,  # shipment_scans.details (Text): bounded so one scan cannot bloat state
    "substatus_text": 500,
    "city": 100,  # Location.label() "<city>, <region>" fits shipment_scans.location (200)
    "region": 64,  # state, zip, country
    "message": 500,  # each of a label's messages
    "metadata": 4000,  # the order ref is extracted from it (orders.ref is 200)
    "url": 2048,  # a longer URL is dropped (a cut URL would point somewhere else)
}
MAX_MESSAGES = 20
TRUNCATED = "…"

# Valid moments: an event dated outside this window is not a carrier scan but garbage (and one near
# year 1 or 9999 overflows date arithmetic downstream: offsets, stall deadlines).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

MAX_DEPTH = 64  # Shippo bodies nest about 5 deep

# A merchant slug, as it appears in webhook URLs (whole-string match: use ``fullmatch``).
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(value: str, limit: int | None = None) -> str:
    """Free text made storable anywhere: controls (NUL included) out, lone surrogates → U+FFFD,
    cut at ``limit`` characters with a marker."""
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    value = _CONTROL.sub("", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - len(TRUNCATED)].rstrip() + TRUNCATED
    return value


def identifier(value: str, field: str, kind: str) -> str:
    """An identifier, unaltered, or a PayloadError naming ``field``."""
    limit = IDENTIFIER_LIMITS[kind]
    if len(value) > limit:
        raise PayloadError(f"'{field}' is longer than {limit} characters")
    if (bad := _UNSAFE_ID.search(value)) is not None:
        char = bad.group()
        name = "a lone surrogate" if "\ud800" <= char <= "\udfff" else f"control character U+{ord(char):04X}"
        raise PayloadError(f"'{field}' contains {name}")
    return value


def opt_identifier(value: Any, field: str, kind: str) -> str | None:
    text = opt_text(value)
    return None if text is None else identifier(text, field, kind)


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (the top value is level 1). Recursion stops at
    ``limit`` + 1 levels whatever the input, so it cannot be exhausted."""
    if limit < 1 or (isinstance(value, dict | list) and _deeper_than(value, limit)):
        raise PayloadError(f"body is nested deeper than {limit} levels")


def _deeper_than(container: dict[str, Any] | list[Any], room: int) -> bool:
    """Whether ``container`` (which may take ``room`` more levels, itself included) goes deeper."""
    if room == 0:
        return True
    for child in container.values() if isinstance(container, dict) else container:
        if isinstance(child, dict | list) and _deeper_than(child, room - 1):
            return True
    return False


def strict_json(raw: bytes | str) -> Any:
    """``json.loads`` that refuses what RFC 8259 refuses (NaN, Infinity) and what cannot be handled
    (numbers of thousands of digits, deep nesting) with a PayloadError."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise PayloadError("body is not valid JSON: it is not UTF-8 text") from None
    except RecursionError:
        raise PayloadError(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # int_max_str_digits: "Exceeds the limit (4300 digits) …"
        raise PayloadError(f"body has a number that cannot be read: {str(exc)[:80]}") from None
    # each level opens a bracket, so a text with at most MAX_DEPTH of them cannot nest deeper
    opened = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
    if opened > MAX_DEPTH:
        check_depth(body)
    return body


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"body is not valid JSON: {name} is not a JSON number")


# tracking_url_provider host -> carrier token, used when the rate is only an id: the registrable
# domains of the one carrier table (domain/carriers.py); a host matches its domain or a subdomain.
CARRIER_HOSTS: Mapping[str, str] = HOST_OWNERS


def require_text(data: Mapping[str, Any], name: str, where: str = "data") -> str:
    value = data.get(name)
    if value is None or value == "":
        raise PayloadError(f"'{where}.{name}' is missing")
    if not isinstance(value, str):
        raise PayloadError(f"'{where}.{name}' must be a string")
    return value


def require_identifier(data: Mapping[str, Any], name: str, kind: str, where: str = "data") -> str:
    """A required identifier, trimmed: present, a string, and storable (``identifier``)."""
    value = require_text(data, name, where).strip()
    if not value:
        raise PayloadError(f"'{where}.{name}' is missing")
    return identifier(value, f"{where}.{name}", kind)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256(text: str) -> str:
    # surrogatepass: a lone surrogate from a JSON escape still hashes (distinctly) instead of raising
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
            raise PayloadError(f"not an ISO 8601 timestamp: {clean_text(s[:40])!r}") from None
    else:
        raise PayloadError(f"not an ISO 8601 timestamp: {type(s).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 has no UTC moment
        raise PayloadError(f"timestamp out of range: {s!s:.40}") from None


def carrier_from_url(url: str | None) -> str | None:
    """Carrier token from a carrier tracking page URL (its host in CARRIER_HOSTS), or None."""
    if not url:
        return None
    try:
        host = (urlsplit(url if "//" in url else "//" + url).hostname or "").lower()
    except ValueError:
        return None
    return owner_of(host) if host else None


def messages(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    texts: list[str] = []
    for item in raw:
        line = free_text(item.get("text") if isinstance(item, dict) else item, "message")
        if line:
            texts.append(line)
        if len(texts) == MAX_MESSAGES:
            break
    return tuple(texts)


def in_window(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise PayloadError(
            f"timestamp out of range (years {EARLIEST.year}–{LATEST.year - 1}): {moment.isoformat()}"
        )
    return moment


def timestamp(data: Mapping[str, Any], name: str, where: str) -> datetime | None:
    try:
        moment = parse_timestamp(data.get(name))
        return None if moment is None else in_window(moment)
    except PayloadError as exc:
        raise PayloadError(f"'{where}.{name}' is {exc}") from None


def lenient_timestamp(value: Any) -> datetime | None:
    """For informational fields (eta): garbage reads as unknown rather than rejecting the event."""
    try:
        moment = parse_timestamp(value)
        return None if moment is None else in_window(moment)
    except PayloadError:
        return None


def reference(value: Any, field: str) -> str | None:
    """An object reference (an id string, or an object carrying object_id), as an identifier."""
    if isinstance(value, dict):
        value = value.get("object_id")
        field += ".object_id"
    return opt_identifier(value, field, "transaction")


def free_text(value: Any, kind: str) -> str | None:
    """``opt_text`` made storable and bounded (``clean_text``); None when nothing is left."""
    text = opt_text(value)
    if text is None:
        return None
    return clean_text(text, TEXT_LIMITS[kind]).strip() or None


def url_text(value: Any) -> str | None:
    """A URL kept only whole: None when it is longer than its bound or carries controls/spaces."""
    text = opt_text(value)
    if text is None or len(text) > TEXT_LIMITS["url"] or _UNSAFE_ID.search(text) or " " in text:
        return None
    return text


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
