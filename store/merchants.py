"""Merchants: tenants with their own webhook credentials, senders, templates and preferences."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import as_utc, utcnow
from store.errors import Conflict, NotFound
from store.schema import merchants

TOKEN_OVERLAP = timedelta(hours=24)

#: Profile fields (CONTRACT §4) and their defaults; validated at the admin boundary.
PROFILE_DEFAULTS: Mapping[str, Any] = {
    "email_from": None,
    "reply_to": None,
    "sms_from": None,
    "support_email": None,
    "support_url": None,
    "default_locale": "en",
    "timezone": "UTC",
    "sms_quiet_hours": None,
    "tracking_url_template": None,
    "order_ref_pattern": None,
    "notify": None,  # None = domain.policy.DEFAULT_NOTIFY
    "alert_email": None,
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Merchant:
    id: int
    slug: str
    name: str
    webhook_token: str = field(repr=False)
    previous_token: str | None = field(repr=False)
    previous_token_expires_at: datetime | None
    hmac_secrets: tuple[str, ...] = field(repr=False)
    profile: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        # profile fields read as attributes: merchant.timezone, merchant.email_from …
        if name in PROFILE_DEFAULTS:
            return self.profile.get(name, PROFILE_DEFAULTS[name])
        raise AttributeError(name)

    def accepts_token(self, token: str, now: datetime) -> bool:
        given = token.encode()
        if hmac.compare_digest(given, self.webhook_token.encode()):
            return True
        return bool(
            self.previous_token
            and self.previous_token_expires_at
            and now < self.previous_token_expires_at
            and hmac.compare_digest(given, self.previous_token.encode())
        )

    def webhook_url(self, public_url: str) -> str:
        return f"{public_url.rstrip('/')}/webhooks/shippo/{self.slug}?token={self.webhook_token}"

    def to_public(self, public_url: str) -> dict[str, Any]:
        """The admin view: token and URL shown, HMAC secrets never (only how many)."""
        return {
            "slug": self.slug,
            "name": self.name,
            **{key: self.profile.get(key, default) for key, default in PROFILE_DEFAULTS.items()},
            "webhook_token": self.webhook_token,
            "webhook_url": self.webhook_url(public_url),
            "previous_token_valid_until": _iso(self.previous_token_expires_at),
            "hmac_secrets_configured": len(self.hmac_secrets),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row_to_merchant(row: Any) -> Merchant:
    return Merchant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        webhook_token=row.webhook_token,
        previous_token=row.previous_token,
        previous_token_expires_at=as_utc(row.previous_token_expires_at),
        hmac_secrets=tuple(row.hmac_secrets or ()),
        profile=dict(row.profile or {}),
    )


def get(conn: Connection, slug: str) -> Merchant | None:
    row = conn.execute(sa.select(merchants).where(merchants.c.slug == slug)).first()
    return _row_to_merchant(row) if row else None


def get_by_id(conn: Connection, merchant_id: int) -> Merchant:
    row = conn.execute(sa.select(merchants).where(merchants.c.id == merchant_id)).first()
    if row is None:
        raise NotFound(f"merchant id {merchant_id}")
    return _row_to_merchant(row)


def require(conn: Connection, slug: str) -> Merchant:
    merchant = get(conn, slug)
    if merchant is None:
        raise NotFound(f"unknown merchant {slug!r}")
    return merchant


def list_all(conn: Connection) -> list[Merchant]:
    return [_row_to_merchant(r) for r in conn.execute(sa.select(merchants).order_by(merchants.c.slug))]


def upsert(
    conn: Connection,
    slug: str,
    *,
    name: str | None,
    profile: Mapping[str, Any],
    hmac_secrets: Sequence[str] | None = None,
    create_only: bool = False,
) -> tuple[Merchant, bool]:
    """Create or update; profile keys given replace stored ones. Returns (merchant, created)."""
    now = utcnow()
    existing = get(conn, slug)
    if existing is None:
        if not name:
            raise Conflict("name is required to create a merchant")
        try:
            conn.execute(
                merchants.insert().values(
                    slug=slug,
                    name=name,
                    profile={k: v for k, v in profile.items() if v is not None},
                    webhook_token=new_token(),
                    hmac_secrets=list(hmac_secrets or ()),
                    created_at=now,
                    updated_at=now,
                )
            )
        except sa.exc.IntegrityError:
            raise Conflict(f"merchant {slug!r} was just created by another request") from None
        return require(conn, slug), True
    if create_only:
        raise Conflict(f"merchant {slug!r} already exists")
    merged = {**existing.profile, **profile}
    values: dict[str, Any] = {"profile": {k: v for k, v in merged.items() if v is not None}, "updated_at": now}
    if name:
        values["name"] = name
    if hmac_secrets is not None:
        values["hmac_secrets"] = list(hmac_secrets)
    conn.execute(merchants.update().where(merchants.c.id == existing.id).values(**values))
    return require(conn, slug), False


def rotate_token(conn: Connection, slug: str, now: datetime | None = None) -> Merchant:
    """New token; the old one keeps working for 24 h so Shippo can be re-pointed calmly."""
    merchant = require(conn, slug)
    now = now or utcnow()
    conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant.id)
        .values(
            webhook_token=new_token(),
            previous_token=merchant.webhook_token,
            previous_token_expires_at=now + TOKEN_OVERLAP,
            updated_at=now,
        )
    )
    return require(conn, slug)
