"""Contact addresses — customer phones and emails, merchant senders — normalized once, on the way in.

**Phones** are accepted in international form only (a leading ``+`` and the country code: we
never guess a country) and stored as E.164. The usual punctuation is accepted and dropped, so
``+1 (415) 555-0155``, ``+1 415.555.0155`` and ``+14155550155`` are all stored as
``+14155550155``: platforms send numbers the way their checkout forms collected them, and
refusing the formatting would only push each of them to write the same normalization. Letters
(vanity numbers), extensions, non-ASCII digits, control characters and a missing ``+`` are
refused. The number must be *possible* for its country (``phonenumbers.is_possible_number``:
a plausible length for the country code), not necessarily *valid* (``is_valid_number`` checks
assigned ranges against metadata that goes stale and refuses test ranges such as 555 numbers).

**Emails** are ``local@domain``. Nothing is stripped or trimmed (``" jane@example.com"`` is
refused, never silently changed); whitespace, control characters and the characters that would
make an address header mean something else (``"(),:;<>[\\]``) are refused. The domain is
lower-cased (domains are case-insensitive); the local part is kept exactly as given (it may
be case-sensitive, RFC 5321 §2.4).

**Opt-outs** compare :func:`opt_out_key` on both sides: E.164 for SMS, the whole address
lower-cased for email (a STOP or an unsubscribe errs towards *not* sending). The key is lenient
about surrounding whitespace so that addresses stored before this validation existed (e.g. a
phone saved with a trailing newline) still meet their opt-out.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

#: Unicode categories refused in every validated text: C0/C1 controls (NUL, CR, LF, TAB, DEL…),
#: lone surrogates (not encodable as UTF-8), and the line/paragraph separators U+2028/U+2029.
CONTROL_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})

PHONE_CHARS = re.compile(r"\+[0-9][0-9 ().\-]*")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
EMAIL_LOCAL = re.compile(r"[^\s\"(),:;<>@\[\\\]]{1,64}")
EMAIL_DOMAIN = re.compile(r"[^\s\"(),:;<>@\[\\\]]+\.[^\s\"(),:;<>@\[\\\].]+")
MAX_EMAIL = 320
MAX_PHONE_INPUT = 32

PHONE_RULE = (
    "must be an E.164 phone number like +14155550123 (spaces, dashes, dots and parentheses are allowed)"
)
EMAIL_RULE = "must be an email address like jane@example.com (no spaces or control characters)"


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character, a lone surrogate or a line separator."""
    return any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in text)


def normalize_phone(raw: str) -> str:
    """``raw`` as E.164 (``+14155550155``); ValueError (with :data:`PHONE_RULE`) when it is not one."""
    if not isinstance(raw, str) or len(raw) > MAX_PHONE_INPUT or not PHONE_CHARS.fullmatch(raw):
        raise ValueError(PHONE_RULE)
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ValueError(PHONE_RULE) from None
    if number.extension or not phonenumbers.is_possible_number(number):
        raise ValueError(PHONE_RULE)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not E164.fullmatch(e164):
        raise ValueError(PHONE_RULE)
    return e164


def normalize_email(raw: str) -> str:
    """``raw`` with its domain lower-cased; ValueError (with :data:`EMAIL_RULE`) when it is not an address."""
    if not isinstance(raw, str) or len(raw) > MAX_EMAIL or has_control(raw):
        raise ValueError(EMAIL_RULE)
    local, at, domain = raw.rpartition("@")
    if not at or not EMAIL_LOCAL.fullmatch(local) or not EMAIL_DOMAIN.fullmatch(domain):
        raise ValueError(EMAIL_RULE)
    if (
        local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or domain.startswith(".")
        or ".." in domain
    ):
        raise ValueError(EMAIL_RULE)
    return f"{local}@{domain.lower()}"


def comparable_phone(raw: str) -> str:
    """E.164 when ``raw`` is a phone number in any accepted formatting (surrounding whitespace
    ignored), else ``raw`` trimmed and lower-cased (a short code, a legacy value): for
    comparing numbers that came from elsewhere (Twilio's ``From``, rows stored long ago)."""
    text = raw.strip()
    try:
        return normalize_phone(text)
    except ValueError:
        return text.lower()


def opt_out_key(channel: str, address: str) -> str:
    """The form opt-out rows are stored and compared in: :func:`comparable_phone` for SMS, the
    trimmed, lower-cased address for email."""
    return comparable_phone(address) if channel == "sms" else address.strip().lower()
