"""Merchants: tenants with their own webhook credentials, senders, templates and preferences.

Secrets at rest (README *Security*): the webhook token is stored as a SHA-256 digest (what the
receiver checks, in constant time) plus an encrypted copy (what the admin API shows); the
previous token only as a digest; HMAC secrets and the Shippo API token only encrypted (the
Shippo token also as a digest: whether it is set, and whether it is the one Shippo refused,
without decrypting it). Encryption is the ``Vault``'s
(``PARCELHOOK_ENCRYPTION_KEYS``). A merchant loaded with a vault decrypts its secrets on first
use and keeps them for its lifetime (the receiver's cache holds it for seconds); loaded
without one, its profile reads as usual and asking for a secret raises ``SecretsSealed``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import utcnow
from store.errors import Conflict, NotFound
from store.schema import merchants
from store.vault import SecretsSealed, Vault, token_digest

TOKEN_OVERLAP = timedelta(hours=24)

#: Profile fields (docs/api.md, Merchants) and their defaults; validated at the admin boundary.
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
    "notify_test_events": False,  # test-mode (Shippo `test: true`) shipments may notify customers
    "test_phone": None,  # the merchant's own number: the only one a template's test SMS may go to
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Merchant:
    id: int
    slug: str
    name: str
    token_digest: str = field(repr=False)
    previous_token_digest: str | None = field(repr=False)
    previous_token_expires_at: datetime | None
    encrypted_token: str = field(repr=False)
    encrypted_hmac_secrets: tuple[str, ...] = field(repr=False)
    profile: Mapping[str, Any]
    vault: Vault | None = field(default=None, repr=False, compare=False)
    encrypted_shippo_token: str | None = field(default=None, repr=False)
    shippo_token_digest: str | None = field(default=None, repr=False)
    shippo_auth_failed_digest: str | None = field(default=None, repr=False)
    shippo_auth_failed_at: datetime | None = None

    def __getattr__(self, name: str) -> Any:
        # profile fields read as attributes: merchant.timezone, merchant.email_from …
        if name in PROFILE_DEFAULTS:
            return self.profile.get(name, PROFILE_DEFAULTS[name])
        raise AttributeError(name)

    def accepts_token(self, token: str, now: datetime) -> bool:
        """Digest against digest, in constant time: the receiver never decrypts anything for this."""
        given = token_digest(token).encode()
        if hmac.compare_digest(given, self.token_digest.encode()):
            return True
        return bool(
            self.previous_token_digest
            and self.previous_token_expires_at
            and now < self.previous_token_expires_at
            and hmac.compare_digest(given, self.previous_token_digest.encode())
        )

    @property
    def hmac_secret_count(self) -> int:
        return len(self.encrypted_hmac_secrets)

    @cached_property
    def webhook_token(self) -> str:
        return self._vault().decrypt(self.encrypted_token)

    @cached_property
    def hmac_secrets(self) -> tuple[str, ...]:
        """In clear, decrypted once per loaded merchant (the receiver's cache keeps it for seconds)."""
        if not self.encrypted_hmac_secrets:
            return ()
        vault = self._vault()
        return tuple(vault.decrypt(sealed) for sealed in self.encrypted_hmac_secrets)

    @property
    def shippo_token_set(self) -> bool:
        return self.encrypted_shippo_token is not None

    @property
    def shippo_paused(self) -> bool:
        """Shippo answered 401 to the current token: no calls until the token changes."""
        return (
            self.shippo_token_digest is not None
            and self.shippo_auth_failed_digest == self.shippo_token_digest
        )

    @cached_property
    def shippo_api_token(self) -> str | None:
        """In clear (decrypted once per loaded merchant); None when not set."""
        if self.encrypted_shippo_token is None:
            return None
        return self._vault().decrypt(self.encrypted_shippo_token)

    def _vault(self) -> Vault:
        if self.vault is None:
            raise SecretsSealed(f"merchant {self.slug!r} was loaded without the encryption keys")
        return self.vault

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
            "hmac_secrets_configured": self.hmac_secret_count,
            # write-only: whether it is set, never the token
            "shippo_api_token_set": self.shippo_token_set,
            "shippo_paused": self.shippo_paused,
            "shippo_auth_failed_at": _iso(self.shippo_auth_failed_at) if self.shippo_paused else None,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row_to_merchant(row: Any, vault: Vault | None) -> Merchant:
    return Merchant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        token_digest=row.webhook_token_digest,
        previous_token_digest=row.previous_token_digest,
        previous_token_expires_at=row.previous_token_expires_at,
        encrypted_token=row.webhook_token_encrypted,
        encrypted_hmac_secrets=tuple(row.hmac_secrets_encrypted or ()),
        profile=dict(row.profile or {}),
        vault=vault,
        encrypted_shippo_token=row.shippo_api_token_encrypted,
        shippo_token_digest=row.shippo_api_token_digest,
        shippo_auth_failed_digest=row.shippo_auth_failed_digest,
        shippo_auth_failed_at=row.shippo_auth_failed_at,
    )


def _token_columns(token: str, vault: Vault) -> dict[str, str]:
    return {"webhook_token_digest": token_digest(token), "webhook_token_encrypted": vault.encrypt(token)}


#: ``shippo_api_token`` given to :func:`upsert`: leave it as it is.
KEEP: Any = object()


def _shippo_token_columns(token: str | None, vault: Vault) -> dict[str, str | None]:
    """A new Shippo token (None: removed). The pause follows the token's digest, so a new token
    is not paused; the failed digest is kept (it names a token no longer in use)."""
    if token is None:
        return {"shippo_api_token_encrypted": None, "shippo_api_token_digest": None}
    return {
        "shippo_api_token_encrypted": vault.encrypt(token),
        "shippo_api_token_digest": token_digest(token),
    }


_BY_SLUG = sa.select(merchants).where(merchants.c.slug == sa.bindparam("slug"))
_BY_ID = sa.select(merchants).where(merchants.c.id == sa.bindparam("merchant_id"))


def get(conn: Connection, slug: str, vault: Vault | None = None) -> Merchant | None:
    row = conn.execute(_BY_SLUG, {"slug": slug}).first()
    return _row_to_merchant(row, vault) if row else None


def get_by_id(conn: Connection, merchant_id: int, vault: Vault | None = None) -> Merchant:
    row = conn.execute(_BY_ID, {"merchant_id": merchant_id}).first()
    if row is None:
        raise NotFound(f"merchant id {merchant_id}")
    return _row_to_merchant(row, vault)


def require(conn: Connection, slug: str, vault: Vault | None = None) -> Merchant:
    merchant = get(conn, slug, vault)
    if merchant is None:
        raise NotFound(f"unknown merchant {slug!r}")
    return merchant


def list_all(conn: Connection, vault: Vault | None = None) -> list[Merchant]:
    return [_row_to_merchant(r, vault) for r in conn.execute(sa.select(merchants).order_by(merchants.c.slug))]


def upsert(
    conn: Connection,
    slug: str,
    *,
    vault: Vault,
    name: str | None,
    profile: Mapping[str, Any],
    hmac_secrets: Sequence[str] | None = None,
    shippo_api_token: str | None = KEEP,
    create_only: bool = False,
) -> tuple[Merchant, bool]:
    """Create or update; profile keys given replace stored ones. ``shippo_api_token``: a new
    token, None to remove it, or left out (``KEEP``). Returns (merchant, created)."""
    shippo = {} if shippo_api_token is KEEP else _shippo_token_columns(shippo_api_token, vault)
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
                    **_token_columns(new_token(), vault),
                    hmac_secrets_encrypted=[vault.encrypt(s) for s in hmac_secrets or ()],
                    **shippo,
                    created_at=now,
                    updated_at=now,
                )
            )
        except sa.exc.IntegrityError:
            raise Conflict(f"merchant {slug!r} was just created by another request") from None
        return require(conn, slug, vault), True
    if create_only:
        raise Conflict(f"merchant {slug!r} already exists")
    merged = {**existing.profile, **profile}
    values: dict[str, Any] = {
        "profile": {k: v for k, v in merged.items() if v is not None},
        "updated_at": now,
    }
    if name:
        values["name"] = name
    if hmac_secrets is not None:
        values["hmac_secrets_encrypted"] = [vault.encrypt(s) for s in hmac_secrets]
    values.update(shippo)
    conn.execute(merchants.update().where(merchants.c.id == existing.id).values(**values))
    return require(conn, slug, vault), False


def rotate_token(conn: Connection, slug: str, *, vault: Vault, now: datetime | None = None) -> Merchant:
    """New token; the old one keeps working for 24 h so Shippo can be re-pointed calmly (by digest)."""
    merchant = require(conn, slug)
    now = now or utcnow()
    conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant.id)
        .values(
            **_token_columns(new_token(), vault),
            previous_token_digest=merchant.token_digest,
            previous_token_expires_at=now + TOKEN_OVERLAP,
            updated_at=now,
        )
    )
    return require(conn, slug, vault)


def pause_shippo(conn: Connection, merchant_id: int, digest: str, now: datetime) -> bool:
    """Shippo refused the token whose digest is ``digest``: pause calls while it is the merchant's
    token. True when this call paused them (the first 401 for that token: alert once); False when
    they already were, or the token changed meanwhile (a 401 for a token no longer in use)."""
    result = conn.execute(
        merchants.update()
        .where(
            merchants.c.id == merchant_id,
            merchants.c.shippo_api_token_digest == digest,
            sa.or_(
                merchants.c.shippo_auth_failed_digest.is_(None),
                merchants.c.shippo_auth_failed_digest != digest,
            ),
        )
        # updated_at too: every change of a merchant row bumps it (store/merchant_cache.py)
        .values(shippo_auth_failed_digest=digest, shippo_auth_failed_at=now, updated_at=now)
    )
    return bool(result.rowcount)


def reencrypt_all(conn: Connection, vault: Vault) -> int:
    """Every merchant's encrypted secrets, re-encrypted under the vault's newest key.

    Rows are locked (PostgreSQL) so a concurrent update of a merchant's HMAC secrets is not
    overwritten with the older list. Returns how many merchants were rewritten.
    """
    rows = conn.execute(
        sa.select(
            merchants.c.id,
            merchants.c.webhook_token_encrypted,
            merchants.c.hmac_secrets_encrypted,
            merchants.c.shippo_api_token_encrypted,
        )
        .order_by(merchants.c.id)
        .with_for_update()
    ).all()
    for row in rows:
        conn.execute(
            merchants.update()
            .where(merchants.c.id == row.id)
            .values(
                webhook_token_encrypted=vault.reencrypt(row.webhook_token_encrypted),
                hmac_secrets_encrypted=[vault.reencrypt(s) for s in row.hmac_secrets_encrypted or ()],
                shippo_api_token_encrypted=vault.reencrypt(row.shippo_api_token_encrypted)
                if row.shippo_api_token_encrypted
                else None,
            )
        )
    return len(rows)
