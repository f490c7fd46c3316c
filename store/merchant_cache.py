"""A per-process copy of the merchants the workers read on every event and every send, served
only once the row's ``updated_at`` has been confirmed inside the caller's own transaction.

The confirmation rides in a statement the hot path runs anyway (the delivery insert of
``process_event``, the notification read of a send), so a cached merchant costs no round trip
and is never older than the transaction that uses it: when the stored ``updated_at`` differs
from the copy's, the row is read again in that transaction (what the code did every time
before). Every change of a merchant's profile, name or token bumps ``updated_at``
(``store/merchants.py``). The copies hold no secrets (loaded without the vault); secrets and
templates are never cached here.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import Database
from store.errors import NotFound
from store.merchants import Merchant, _row_to_merchant
from store.schema import merchants


def version_of(merchant_id: Any) -> sa.ScalarSelect[Any]:
    """The stored version of the merchant a row belongs to, for a ``RETURNING``/select list."""
    return sa.select(merchants.c.updated_at).where(merchants.c.id == merchant_id).scalar_subquery()


_BY_SLUG = sa.select(merchants).where(merchants.c.slug == sa.bindparam("slug"))
_BY_ID = sa.select(merchants).where(merchants.c.id == sa.bindparam("merchant_id"))


@dataclass(frozen=True)
class _Copy:
    merchant: Merchant
    updated_at: datetime


class MerchantCache:
    """Merchants by slug and by id, each with the ``updated_at`` it was read at."""

    def __init__(self) -> None:
        self._by_slug: dict[str, _Copy] = {}
        self._by_id: dict[int, _Copy] = {}
        self._lock = threading.Lock()

    def candidate(self, slug: str) -> Merchant | None:
        """The copy for ``slug``, to be confirmed with :meth:`confirm` in the same transaction."""
        copy = self._by_slug.get(slug)
        return copy.merchant if copy is not None else None

    def confirm(self, conn: Connection, merchant: Merchant, stored_updated_at: datetime | None) -> Merchant:
        """``merchant`` when ``stored_updated_at`` (read in this transaction) is its copy's version;
        otherwise the row read again in this transaction."""
        copy = self._by_id.get(merchant.id)
        if copy is not None and copy.merchant is merchant and copy.updated_at == stored_updated_at:
            return merchant
        return self.by_id(conn, merchant.id, None)

    def require(self, conn: Connection, slug: str) -> Merchant:
        """Read by slug in this transaction (and keep the copy); ``NotFound`` when unknown."""
        row = conn.execute(_BY_SLUG, {"slug": slug}).first()
        if row is None:
            raise NotFound(f"unknown merchant {slug!r}")
        return self._keep(row)

    def by_id(self, conn: Connection, merchant_id: int, stored_updated_at: datetime | None) -> Merchant:
        """The copy when ``stored_updated_at`` (read in this transaction) matches it, else the row."""
        copy = self._by_id.get(merchant_id)
        if copy is not None and stored_updated_at is not None and copy.updated_at == stored_updated_at:
            return copy.merchant
        row = conn.execute(_BY_ID, {"merchant_id": merchant_id}).first()
        if row is None:
            raise NotFound(f"merchant id {merchant_id}")
        return self._keep(row)

    def _keep(self, row: Any) -> Merchant:
        copy = _Copy(_row_to_merchant(row, None), row.updated_at)
        with self._lock:
            self._by_slug[copy.merchant.slug] = copy
            self._by_id[copy.merchant.id] = copy
        return copy.merchant


_caches: weakref.WeakKeyDictionary[Database, MerchantCache] = weakref.WeakKeyDictionary()
_caches_guard = threading.Lock()


def for_db(db: Database) -> MerchantCache:
    """The process's cache for ``db`` (one per :class:`Database`: a copy never crosses databases)."""
    cache = _caches.get(db)
    if cache is None:
        with _caches_guard:
            cache = _caches.setdefault(db, MerchantCache())
    return cache
