"""Settings: one frozen object loaded once from the environment (README, Configuration).

Nothing else in parcelhook reads ``os.environ``. A missing or malformed value stops
start-up with one line naming the variable (``SettingsError``), and secrets are
never part of ``repr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from store.vault import Vault

PROJECT_ROOT = Path(__file__).resolve().parent


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


#: Longest retention: 100 years (a cutoff further back than year 1 would not compute).
MAX_RETENTION_DAYS = 36_500


def _retention_days(name: str, raw: str) -> int:
    """Plain digits, 1..36500 (days)."""
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= MAX_RETENTION_DAYS:
        raise SettingsError(
            f"{name} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, got {raw!r}"
        )
    return int(raw)


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        scheme = urlsplit(raw).scheme.split("+")[0]
        if scheme not in schemes:
            raise SettingsError(f"{name} must be a {'/'.join(schemes)} URL, got scheme {scheme or 'none'!r}")
        return raw

    return parse


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} is empty")
    return raw.strip()


def _fernet_keys(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys, newest first (the first encrypts, all decrypt)."""
    from cryptography.fernet import Fernet

    keys = tuple(part.strip() for part in raw.split(","))
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:  # also binascii.Error: never echo the key itself
            raise SettingsError(
                f"{name}: key {position} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with `parcelhook secrets new-key`)"
            ) from None
    return keys


_NO_ENCRYPTION_KEYS = "PARCELHOOK_ENCRYPTION_KEYS is not set (and var/encryption-key does not exist)"


def _read_secret(var_dir: Path, name: str) -> str | None:
    """``make run`` keeps generated secrets in var/ (mode 0600)."""
    path = var_dir / name
    return path.read_text().strip() or None if path.exists() else None


@dataclass(frozen=True)
class Settings:
    # URLs may carry passwords: kept out of repr like every other secret
    database_url: str = field(default="sqlite:///var/parcelhook.db", repr=False)
    broker_url: str = field(default="redis://127.0.0.1:6390/0", repr=False)
    redis_url: str | None = field(
        default=None, repr=False
    )  # state (dedupe, telemetry); default: the broker's
    admin_token: str | None = field(default=None, repr=False)
    signing_key: str | None = field(default=None, repr=False)  # signs unsubscribe links
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    signature_tolerance_s: int = 300
    smtp_url: str | None = field(default=None, repr=False)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_api_url: str | None = None
    stall_after_h: int = 96
    retain_bodies_days: int = 30  # raw webhook bodies are removed after this many days
    retain_messages_days: int = 90  # rendered message bodies are removed after this many days
    ops_alert_email: str | None = None
    web_port: int = 8000
    admin_port: int = 8001
    var_dir: Path = PROJECT_ROOT / "var"
    broker_namespace: str = "parcelhook"
    platform_events_url: str | None = field(default=None, repr=False)  # may carry broker credentials
    # RabbitMQ's management HTTP API (queue depths, in flight, oldest age); carries credentials
    rabbitmq_management_url: str | None = field(default=None, repr=False)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)  # merchant secrets at rest; newest first
    shippo_api_url: str = "https://api.goshippo.com"  # base URL of Shippo's API (a local server in tests)
    reconcile_after_h: int = 12  # a non-terminal shipment quiet this long is looked up at Shippo
    shippo_rate_per_min: int = 60  # Shippo calls per merchant per minute (reconciliation)

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def unsubscribe_key(self) -> bytes:
        """Key for the links we sign (unsubscribe). Its own secret: not the admin token, which
        the public `web` process must not need, and which an admin may rotate at will."""
        import hashlib

        if not self.signing_key:
            raise SettingsError("PARCELHOOK_SIGNING_KEY is not set (and var/signing-key does not exist)")
        return hashlib.sha256(b"parcelhook-unsubscribe:" + self.signing_key.encode()).digest()

    @cached_property
    def vault(self) -> Vault:
        """Encrypts merchant secrets at rest with the first key; decrypts with any of them."""
        from store.vault import Vault

        if not self.encryption_keys:
            raise SettingsError(_NO_ENCRYPTION_KEYS)
        return Vault(self.encryption_keys)

    @property
    def state_redis_url(self) -> str:
        """The Redis for receiver dedupe keys, telemetry and ops state: the broker itself when
        it is Redis, else ``PARCELHOOK_REDIS_URL`` (required with RabbitMQ)."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url.startswith("amqp"):
            raise SettingsError("PARCELHOOK_REDIS_URL is required when PARCELHOOK_BROKER_URL is amqp://")
        return self.broker_url

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        require_admin_token: bool = False,
        require_signing_key: bool = False,
        require_encryption_keys: bool = False,
    ) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = "PARCELHOOK_" + f.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            parser = _PARSERS.get(f.name, _text)
            values[f.name] = parser(var, raw)
        if "database_url" not in values and "var_dir" in values:
            values["database_url"] = f"sqlite:///{values['var_dir'] / 'parcelhook.db'}"
        var_dir = values.get("var_dir", cls.var_dir)
        values.setdefault("admin_token", _read_secret(var_dir, "admin-token"))
        values.setdefault("signing_key", _read_secret(var_dir, "signing-key"))
        if "encryption_keys" not in values:
            stored = _read_secret(var_dir, "encryption-key")
            if stored:
                values["encryption_keys"] = _fernet_keys(
                    "var/encryption-key (PARCELHOOK_ENCRYPTION_KEYS)", stored
                )
        settings = cls(**values)
        if require_admin_token and not settings.admin_token:
            raise SettingsError("PARCELHOOK_ADMIN_TOKEN is not set (and var/admin-token does not exist)")
        if require_signing_key and not settings.signing_key:
            raise SettingsError("PARCELHOOK_SIGNING_KEY is not set (and var/signing-key does not exist)")
        if require_encryption_keys and not settings.encryption_keys:
            raise SettingsError(_NO_ENCRYPTION_KEYS)
        if settings.broker_url.startswith("amqp") and not settings.redis_url:
            raise SettingsError("PARCELHOOK_REDIS_URL is required when PARCELHOOK_BROKER_URL is amqp://")
        if bool(settings.twilio_account_sid) != bool(settings.twilio_auth_token):
            missing = (
                "PARCELHOOK_TWILIO_AUTH_TOKEN"
                if settings.twilio_account_sid
                else "PARCELHOOK_TWILIO_ACCOUNT_SID"
            )
            raise SettingsError(f"{missing} is not set (Twilio needs both the account SID and auth token)")
        return settings


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "database_url": _url(("sqlite", "postgresql", "postgres")),
    "broker_url": _url(("redis", "rediss", "unix", "amqp", "amqps")),
    "redis_url": _url(("redis", "rediss", "unix")),
    "public_url": _url(("http", "https")),
    "smtp_url": _url(("smtp", "smtps")),
    "twilio_api_url": _url(("http", "https")),
    "platform_events_url": _url(("redis", "rediss", "amqp", "amqps", "memory")),
    "rabbitmq_management_url": _url(("http", "https")),
    "max_body_bytes": _positive_int,
    "signature_tolerance_s": _positive_int,
    "stall_after_h": _positive_int,
    "retain_bodies_days": _retention_days,
    "retain_messages_days": _retention_days,
    "shippo_api_url": _url(("http", "https")),
    "reconcile_after_h": _positive_int,
    "shippo_rate_per_min": _positive_int,
    "web_port": _positive_int,
    "admin_port": _positive_int,
    "var_dir": lambda _name, raw: Path(raw),
    "encryption_keys": _fernet_keys,
}


def load_or_exit(**kwargs: Any) -> Settings:
    """For process entry points: one line on stderr naming the variable, exit status 2."""
    import sys

    try:
        return Settings.from_env(**kwargs)
    except SettingsError as exc:
        print(f"parcelhook: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
