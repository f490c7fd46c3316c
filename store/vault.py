"""Merchant secrets at rest: encrypted under rotatable keys, webhook tokens also as digests.

- ``Vault`` encrypts with the first of ``PARCELHOOK_ENCRYPTION_KEYS`` and decrypts with any
  of them (cryptography's ``MultiFernet``: AES-128-CBC + HMAC-SHA256, authenticated), so a
  key is rotated by putting a new one in front, re-encrypting (``parcelhook secrets
  reencrypt``) and then dropping the old one.
- ``token_digest`` is what the receiver checks a webhook token against. A plain SHA-256 is
  enough here: tokens are 192 random bits (``secrets.token_urlsafe(24)``), never chosen by
  a person, so there is no dictionary to try and a preimage search is out of reach; a keyed
  digest would only make the receiver depend on the encryption key (and its rotation) for
  a check that needs no secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from store.errors import StoreError


class SecretUnreadable(StoreError):
    """A stored secret cannot be decrypted with any configured key (a key was dropped too soon)."""


class SecretsSealed(StoreError):
    """A merchant was loaded without a vault and its secrets were asked for."""


def generate_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64), for ``PARCELHOOK_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Vault:
    """Encrypts with the newest key, decrypts with any configured key."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a vault needs at least one key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self._count = len(keys)

    def __repr__(self) -> str:
        return f"Vault({self._count} key{'s' if self._count != 1 else ''})"

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        with _unreadable(" (was a key dropped before `parcelhook secrets reencrypt` ran?)"):
            return self._fernet.decrypt(sealed.encode()).decode()

    def reencrypt(self, sealed: str) -> str:
        """The same secret, encrypted under the newest key."""
        with _unreadable():
            return self._fernet.rotate(sealed.encode()).decode()


@contextmanager
def _unreadable(hint: str = "") -> Iterator[None]:
    """A secret no configured key opens (``InvalidToken``) raises :class:`SecretUnreadable`."""
    try:
        yield
    except InvalidToken:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with any key in PARCELHOOK_ENCRYPTION_KEYS" + hint
        ) from None
