"""Field validation for the admin API: every problem is collected and answered as one 422.

Every pattern here validates a *whole* string (``fullmatch``: ``$`` would also match before a
final newline), and no validated string may hold a control character, a lone surrogate or a
line separator (:func:`store.contacts.has_control`), whatever the field. Phones and emails are
normalized once, here, on the way in (E.164; lower-cased email domain): see ``store/contacts.py``
for the rules and why formatted phone numbers are accepted.
"""

from __future__ import annotations

import importlib
import re
import string
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.vocabulary import Channel, NotificationKind
from store.contacts import has_control, normalize_email, normalize_phone
from workers.order_refs import compile_order_ref_pattern, pattern_problem

# Whole-string patterns: always used with .fullmatch().
LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z]{2,4})?")
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
QUIET = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
SLUG_RULE = "must be lowercase letters, digits and dashes (max 63)"


class Invalid(Exception):
    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = dict(fields)


Check = Callable[[Any], str | None]  # returns an error message or None


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def control_problem(v: Any) -> str | None:
    """A control character anywhere in ``v`` (a string, or the strings of a list/object)."""
    if isinstance(v, str):
        bad = next((ch for ch in v if has_control(ch)), None)
        return None if bad is None else f"must not contain control characters (found U+{ord(bad):04X})"
    if isinstance(v, list):
        return next((p for item in v if (p := control_problem(item)) is not None), None)
    if isinstance(v, dict):
        return next(
            (p for pair in v.items() for item in pair if (p := control_problem(item)) is not None), None
        )
    return None


def text(max_len: int = 200) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v.strip():
            return "must be a non-empty string"
        return f"must be at most {max_len} characters" if len(v) > max_len else None

    return check


def _problem(normalize: Callable[[str], str], v: Any) -> str | None:
    try:
        normalize(v)
    except ValueError as exc:
        return str(exc)
    return None


def email(v: Any) -> str | None:
    return _problem(normalize_email, v)


def phone(v: Any) -> str | None:
    return _problem(normalize_phone, v)


def locale(v: Any) -> str | None:
    return None if isinstance(v, str) and LOCALE.fullmatch(v) else "must be a locale like 'en' or 'es-MX'"


def timezone(v: Any) -> str | None:
    if not isinstance(v, str) or not v:
        return "must be an IANA time zone like 'America/New_York'"
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown IANA time zone {v!r}"
    return None


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def http_url(v: Any) -> str | None:
    parts = urlsplit(v) if isinstance(v, str) else None
    return None if parts and parts.scheme in ("http", "https") and parts.netloc else "must be an http(s) URL"


def sms_sender(v: Any) -> str | None:
    if isinstance(v, str) and (SERVICE_SID.fullmatch(v) or phone(v) is None):
        return None
    return "must be an E.164 number or a Twilio Messaging Service SID (MG…)"


def normalize_sms_sender(v: str) -> str:
    return v if SERVICE_SID.fullmatch(v) else normalize_phone(v)


def quiet_hours(v: Any) -> str | None:
    return None if isinstance(v, str) and QUIET.fullmatch(v) else "must look like '21:00-08:00'"


def tracking_template(v: Any) -> str | None:
    if (problem := http_url(v)) is not None:
        return problem
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
    except ValueError as exc:  # "Single '{' encountered in format string"
        return f"is not a valid template: {exc}"
    unknown = names - {"carrier", "tracking_number"}
    if unknown:
        return f"unknown placeholder(s) {sorted(unknown)}; use {{carrier}} and {{tracking_number}}"
    return None if "tracking_number" in names else "must contain {tracking_number}"


def regex_one_group(v: Any) -> str | None:
    """A merchant ``order_ref_pattern``: RE2 can run it (linear time: no backreferences or
    lookarounds, see ``workers/order_refs.py``), it has exactly one group, and it repeats no
    group that itself repeats a variable number of times (``(a+)+``: harmless under RE2, but
    exponential in any backtracking engine the pattern is ever copied to, and never needed to
    find an order number)."""
    if not isinstance(v, str) or not v:
        return "must be a regular expression"
    if (problem := pattern_problem(v)) is not None:
        return problem
    groups = compile_order_ref_pattern(v).groups
    if groups != 1:
        return f"must have exactly one group, has {groups}"
    if _nested_repetition(v):
        return "must not repeat a group that itself repeats, like (a+)+ (catastrophic backtracking)"
    return None


def _nested_repetition(pattern: str) -> bool:
    """True when an unbounded repeat (``*``, ``+``, ``{n,}``) contains a variable-length repeat.

    Read with the stdlib's own regex parser; a pattern it cannot read (RE2-only syntax such as
    ``\\pL``) is not checked here: RE2 runs it in linear time anyway."""
    try:
        # Private modules of the stdlib, looked up by name: whether type checkers know them
        # depends on which stubs a run happens to load.
        sre = importlib.import_module("re._constants")
        sre_parse = importlib.import_module("re._parser")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = sre_parse.parse(pattern)
    except (ImportError, re.error, RecursionError, ValueError, OverflowError):
        return False
    repeats = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}

    def walk(items: Any, in_unbounded: bool) -> bool:
        for op, av in items:
            if op in repeats:
                low, high, body = av
                if in_unbounded and low != high:
                    return True
                if walk(body, in_unbounded or high == sre.MAXREPEAT):
                    return True
            else:
                for sub in _subpatterns(av, sre_parse.SubPattern):
                    if walk(sub, in_unbounded):
                        return True
        return False

    return walk(parsed, False)


def _subpatterns(av: Any, kind: type) -> list[Any]:
    """The nested sub-patterns of a parsed node's argument (groups, branches, assertions)."""
    if isinstance(av, kind):
        return [av]
    if isinstance(av, (tuple, list)):
        return [sub for item in av for sub in _subpatterns(item, kind)]
    return []


def notify_map(v: Any) -> str | None:
    if not isinstance(v, dict):
        return 'must be an object like {"email": ["shipped", …], "sms": [...]}'
    for channel, kinds in v.items():
        if channel not in {c.value for c in Channel}:
            return f"unknown channel {channel!r}"
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            return f"{channel} must be a list of notification kinds"
        unknown = [k for k in kinds if k not in {n.value for n in NotificationKind}]
        if unknown:
            return f"unknown notification kind(s) {unknown}"
    return None


def secrets_list(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(s, str) and len(s) >= 16 for s in v):
        return "must be a list of secrets of at least 16 characters"
    return None if len(v) <= 5 else "at most 5 secrets (keep old ones only while rotating)"


def shippo_token(v: Any) -> str | None:
    """``shippo_live_…`` / ``shippo_test_…``, the whole string; the problem never echoes the value."""
    from shippo_api.client import TOKEN, TOKEN_RULE

    return None if isinstance(v, str) and TOKEN.fullmatch(v) else TOKEN_RULE


Normalize = Callable[[Any], Any]


def validate(
    payload: Any,
    schema: Mapping[str, Check],
    *,
    required: tuple[str, ...] = (),
    normalize: Mapping[str, Normalize] | None = None,
) -> dict[str, Any]:
    """``payload`` checked against ``schema`` (every problem in one :class:`Invalid`), with the
    ``normalize`` functions applied to the fields they name (``None`` values are left as they are)."""
    if not isinstance(payload, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for key in payload:
        if key not in schema:
            errors[key] = "unknown field"
    for key in required:
        if payload.get(key) is None:
            errors[key] = "is required"
    for key, check in schema.items():
        if key in payload and key not in errors:
            if (problem := control_problem(payload[key]) or check(payload[key])) is not None:
                errors[key] = problem
    if errors:
        raise Invalid(errors)
    clean = dict(payload)
    for key, fix in (normalize or {}).items():
        if clean.get(key) is not None:
            clean[key] = fix(clean[key])
    return clean


MERCHANT_FIELDS: Mapping[str, Check] = {
    "name": text(200),
    "email_from": optional(email),
    "reply_to": optional(email),
    "sms_from": optional(sms_sender),
    "support_email": optional(email),
    "support_url": optional(http_url),
    "default_locale": locale,
    "timezone": timezone,
    "sms_quiet_hours": optional(quiet_hours),
    "tracking_url_template": optional(tracking_template),
    "order_ref_pattern": optional(regex_one_group),
    "notify": optional(notify_map),
    "alert_email": optional(email),
    "notify_test_events": boolean,
    "test_phone": optional(phone),
    "hmac_secrets": secrets_list,
    # write-only (GET shows shippo_api_token_set); null removes it
    "shippo_api_token": optional(shippo_token),
}

MERCHANT_NORMALIZE: Mapping[str, Normalize] = {
    "email_from": normalize_email,
    "reply_to": normalize_email,
    "support_email": normalize_email,
    "alert_email": normalize_email,
    "sms_from": normalize_sms_sender,
    "test_phone": normalize_phone,
}

CUSTOMER_FIELDS: Mapping[str, Check] = {
    "name": optional(text(200)),
    "email": optional(email),
    "phone": optional(phone),
    "locale": optional(locale),
    "timezone": optional(timezone),
}

CUSTOMER_NORMALIZE: Mapping[str, Normalize] = {"email": normalize_email, "phone": normalize_phone}


def validate_merchant(payload: Any) -> dict[str, Any]:
    """A merchant PUT body (or the CLI's flags), checked and with its addresses normalized."""
    return validate(payload, MERCHANT_FIELDS, normalize=MERCHANT_NORMALIZE)


NOTIFY_FIELDS: Mapping[str, Check] = {"email": boolean, "sms": boolean}


def validate_order(payload: Any) -> tuple[dict[str, Any], dict[str, bool]]:
    """Customer and notify of an order PUT; every problem (top level and nested) in one Invalid."""
    if not isinstance(payload, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {key: "unknown field" for key in payload if key not in ("customer", "notify")}
    customer: dict[str, Any] = {}
    notify: dict[str, bool] = {"email": True, "sms": False}
    sections: tuple[tuple[str, Mapping[str, Check], Mapping[str, Normalize], dict[str, Any]], ...] = (
        ("customer", CUSTOMER_FIELDS, CUSTOMER_NORMALIZE, customer),
        ("notify", NOTIFY_FIELDS, {}, notify),
    )
    for name, schema, normalize, target in sections:
        value = payload.get(name, {})
        if not isinstance(value, dict):
            errors[name] = "must be a JSON object"
            continue
        try:
            target.update(validate(value, schema, normalize=normalize))
        except Invalid as exc:
            errors.update({f"{name}.{k}": v for k, v in exc.fields.items()})
    if errors:
        raise Invalid(errors)
    return customer, notify
