"""Merchant API keys: bearer tokens that see and change one merchant only (docs/api.md,
*Merchant keys*; the admin app's scope rules are ``admin/scopes.py``).

A key is ``phk_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits, nothing
derived from the merchant), shown once when it is created. Only its SHA-256 digest is stored
(a lookup by digest: the key itself is never in the database, and a digest is no use to a
thief), with its first characters (``prefix``) to tell keys apart in a listing.

``last_used_at`` is refreshed when the key authenticates, at most once per
:data:`LAST_USED_EVERY` per key, so a merchant reading its orders does not turn every read
into a write. A revoked key (``revoked_at`` set) no longer authenticates; its row stays.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import Database, utcnow
from store.errors import NotFound
from store.schema import merchant_keys, merchants

#: What every key starts with (recognisable in a config file or a secret scanner's rules).
KEY_PREFIX = "phk_"
#: Characters of the key kept in clear to tell keys apart: ``phk_`` + 8.
SHOWN_CHARS = len(KEY_PREFIX) + 8
#: ``last_used_at`` is written at most this often per key.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_LABEL = 200


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(given: str) -> bool:
    return given.startswith(KEY_PREFIX)


@dataclass(frozen=True)
class MerchantKey:
    """A key as listed: never the key, never its digest."""

    id: int
    merchant_id: int
    prefix: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class KeyHolder:
    """Who a live key speaks for: the key's id and its merchant."""

    key_id: int
    key_prefix: str
    merchant_id: int
    merchant_slug: str


def _key(r: Any) -> MerchantKey:
    return MerchantKey(
        id=r.id,
        merchant_id=r.merchant_id,
        prefix=r.prefix,
        label=r.label,
        created_at=r.created_at,
        last_used_at=r.last_used_at,
        revoked_at=r.revoked_at,
    )


def create(conn: Connection, merchant_id: int, label: str | None) -> tuple[MerchantKey, str]:
    """A new key for the merchant: (its row, the key itself — shown once, never stored)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    key_id = conn.execute(
        sa.insert(merchant_keys)
        .values(
            merchant_id=merchant_id,
            digest=digest(key),
            prefix=key[:SHOWN_CHARS],
            label=label,
            created_at=now,
        )
        .returning(merchant_keys.c.id)
    ).scalar_one()
    return MerchantKey(key_id, merchant_id, key[:SHOWN_CHARS], label, now, None, None), key


def for_merchant(conn: Connection, merchant_id: int) -> list[MerchantKey]:
    rows = conn.execute(
        sa.select(merchant_keys)
        .where(merchant_keys.c.merchant_id == merchant_id)
        .order_by(merchant_keys.c.id)
    )
    return [_key(r) for r in rows]


def revoke(conn: Connection, merchant_id: int, key_id: int) -> MerchantKey:
    """Revoke the merchant's key ``key_id`` (again: no change). A key of another merchant is
    :class:`NotFound`, exactly like a key that does not exist."""
    row = conn.execute(
        sa.select(merchant_keys).where(
            merchant_keys.c.id == key_id, merchant_keys.c.merchant_id == merchant_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no key {key_id} for this merchant")
    if row.revoked_at is None:
        conn.execute(sa.update(merchant_keys).where(merchant_keys.c.id == key_id).values(revoked_at=utcnow()))
    return _key(conn.execute(sa.select(merchant_keys).where(merchant_keys.c.id == key_id)).one())


_LIVE = (
    sa.select(
        merchant_keys.c.id,
        merchant_keys.c.prefix,
        merchant_keys.c.merchant_id,
        merchant_keys.c.last_used_at,
        merchants.c.slug,
    )
    .join(merchants, merchants.c.id == merchant_keys.c.merchant_id)
    .where(merchant_keys.c.revoked_at.is_(None))
)


def authenticate(db: Database, key: str, *, now: datetime | None = None) -> KeyHolder | None:
    """The holder of ``key`` when it is a live key (None: unknown or revoked), its use recorded
    (a write only when the last recorded use is older than :data:`LAST_USED_EVERY`)."""
    with db.read() as conn:
        row = conn.execute(_LIVE.where(merchant_keys.c.digest == digest(key))).first()
    if row is None:
        return None
    _record_use(db, row.id, row.last_used_at, now or utcnow())
    return KeyHolder(row.id, row.prefix, row.merchant_id, row.slug)


def live(db: Database, key_id: int) -> KeyHolder | None:
    """The holder of the key ``key_id`` if it is still live (a page session re-checks its key)."""
    with db.read() as conn:
        row = conn.execute(_LIVE.where(merchant_keys.c.id == key_id)).first()
    if row is None:
        return None
    _record_use(db, row.id, row.last_used_at, utcnow())
    return KeyHolder(row.id, row.prefix, row.merchant_id, row.slug)


def _record_use(db: Database, key_id: int, last_used_at: datetime | None, now: datetime) -> None:
    cutoff = now - LAST_USED_EVERY
    if last_used_at is not None and last_used_at > cutoff:
        return
    with db.write() as conn:  # the WHERE keeps concurrent requests to one write per interval
        conn.execute(
            sa.update(merchant_keys)
            .where(
                merchant_keys.c.id == key_id,
                sa.or_(merchant_keys.c.last_used_at.is_(None), merchant_keys.c.last_used_at <= cutoff),
            )
            .values(last_used_at=now)
        )
