"""Field validation for the admin API: every problem is collected and answered as one 422."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.vocabulary import Channel, NotificationKind

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
QUIET = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


class Invalid(Exception):
    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = dict(fields)


Check = Callable[[Any], str | None]  # returns an error message or None


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def text(max_len: int = 200) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v.strip():
            return "must be a non-empty string"
        return f"must be at most {max_len} characters" if len(v) > max_len else None

    return check


def email(v: Any) -> str | None:
    return None if isinstance(v, str) and EMAIL.match(v) and len(v) <= 320 else "must be an email address"


def phone(v: Any) -> str | None:
    return None if isinstance(v, str) and E164.match(v) else "must be an E.164 phone number like +14155550123"


def locale(v: Any) -> str | None:
    return None if isinstance(v, str) and LOCALE.match(v) else "must be a locale like 'en' or 'es-MX'"


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
    if isinstance(v, str) and (E164.match(v) or SERVICE_SID.match(v)):
        return None
    return "must be an E.164 number or a Twilio Messaging Service SID (MG…)"


def quiet_hours(v: Any) -> str | None:
    return None if isinstance(v, str) and QUIET.match(v) else "must look like '21:00-08:00'"


def tracking_template(v: Any) -> str | None:
    if (problem := http_url(v)) is not None:
        return problem
    names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
    unknown = names - {"carrier", "tracking_number"}
    if unknown:
        return f"unknown placeholder(s) {sorted(unknown)}; use {{carrier}} and {{tracking_number}}"
    return None if "tracking_number" in names else "must contain {tracking_number}"


def regex_one_group(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a regular expression"
    try:
        compiled = re.compile(v)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None if compiled.groups == 1 else f"must have exactly one group, has {compiled.groups}"


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


def validate(payload: Any, schema: Mapping[str, Check], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
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
        if key in payload and key not in errors and (problem := check(payload[key])) is not None:
            errors[key] = problem
    if errors:
        raise Invalid(errors)
    return dict(payload)


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
    "hmac_secrets": secrets_list,
}

CUSTOMER_FIELDS: Mapping[str, Check] = {
    "name": optional(text(200)),
    "email": optional(email),
    "phone": optional(phone),
    "locale": optional(locale),
    "timezone": optional(timezone),
}

NOTIFY_FIELDS: Mapping[str, Check] = {"email": boolean, "sms": boolean}


def validate_order(payload: Any) -> tuple[dict[str, Any], dict[str, bool]]:
    """Customer and notify of an order PUT; every problem (top level and nested) in one Invalid."""
    if not isinstance(payload, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {key: "unknown field" for key in payload if key not in ("customer", "notify")}
    customer: dict[str, Any] = {}
    notify: dict[str, bool] = {"email": True, "sms": False}
    for name, schema, target in (("customer", CUSTOMER_FIELDS, customer), ("notify", NOTIFY_FIELDS, notify)):
        value = payload.get(name, {})
        if not isinstance(value, dict):
            errors[name] = "must be a JSON object"
            continue
        try:
            target.update(validate(value, schema))
        except Invalid as exc:
            errors.update({f"{name}.{k}": v for k, v in exc.fields.items()})
    if errors:
        raise Invalid(errors)
    return customer, notify
