"""A short-lived per-process cache of merchants, so the receiver's hot path rarely touches the DB.

Only hits are cached (a merchant created a second ago is found at once); a token rotation
or a new HMAC secret takes effect within ``ttl_s``. A merchant's HMAC secrets are decrypted
once when it is loaded, not per request; its webhook token is never decrypted here (the
receiver compares digests).
"""

from __future__ import annotations

import threading
import time

from domain.fields import SLUG
from ingest.errors import DatabaseUnreachable, UnknownMerchant
from store import merchants as merchant_store
from store.database import Database
from store.errors import StorageUnavailable
from store.merchants import Merchant
from store.vault import Vault


class MerchantCache:
    def __init__(self, db: Database, vault: Vault, ttl_s: float = 5.0) -> None:
        self.db = db
        self.vault = vault
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Merchant]] = {}
        self._lock = threading.Lock()

    def get(self, slug: str) -> Merchant | None:
        now = time.monotonic()
        entry = self._entries.get(slug)
        if entry and now - entry[0] < self.ttl_s:
            return entry[1]
        with self.db.read() as conn:
            merchant = merchant_store.get(conn, slug, self.vault)
        if merchant is not None:
            _ = merchant.hmac_secrets  # decrypted now, once per load: cache hits never decrypt
            with self._lock:
                self._entries[slug] = (now, merchant)
        return merchant

    def require(self, slug: str) -> Merchant:
        """The merchant, or the receiver's rejection: 404 unknown, 503 database unreachable."""
        if not SLUG.fullmatch(slug):  # never a lookup with NUL/surrogates (PostgreSQL refuses: not a 503)
            raise UnknownMerchant(f"no merchant {slug[:64]!r} is configured here")
        try:
            merchant = self.get(slug)
        except StorageUnavailable as exc:
            raise DatabaseUnreachable("the database is unreachable; retry later") from exc
        if merchant is None:
            raise UnknownMerchant(f"no merchant {slug!r} is configured here")
        return merchant
