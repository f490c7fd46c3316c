"""merchant secrets at rest: token digests + encrypted copies, encrypted HMAC secrets

The data is converted here, in the same transaction as the schema change, so no database
ever holds a half-converted merchants table and a second run cannot encrypt twice (Alembic's
version row gates it). Converting existing rows needs the encryption key: ``parcelhook
migrate`` (and ``make run``) pass their ``PARCELHOOK_ENCRYPTION_KEYS`` vault in through
``store.migrate.upgrade(url, vault=…)``; a database without merchants needs no key.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NO_KEY = (
    "PARCELHOOK_ENCRYPTION_KEYS is required to {what} the secrets of the {n} existing merchant(s) "
    "(set it, or keep var/encryption-key, and run `parcelhook migrate` again)"
)


class _Cipher(Protocol):
    """What the migration needs of ``store.vault.Vault``."""

    def encrypt(self, plain: str) -> str: ...

    def decrypt(self, sealed: str) -> str: ...


def _table(*columns: sa.ColumnClause[Any]) -> sa.TableClause:
    return sa.table("merchants", sa.column("id", sa.Integer), *columns)


def _vault(what: str, rows: int) -> _Cipher | None:
    """The vault passed in by ``store.migrate.upgrade``; None when there are no rows to convert."""
    if not rows:
        return None
    vault: _Cipher | None = context.config.attributes.get("vault")
    if vault is None:
        from config import SettingsError

        raise SettingsError(_NO_KEY.format(what=what, n=rows))
    return vault


def _secure_delete() -> None:
    """SQLite: zero the pages the plain values leave behind (the table is rebuilt)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")


def upgrade() -> None:
    bind = op.get_bind()
    plain = _table(
        sa.column("webhook_token", sa.String),
        sa.column("previous_token", sa.String),
        sa.column("hmac_secrets", sa.JSON),
    )
    rows = bind.execute(sa.select(plain).order_by(plain.c.id)).all()
    vault = _vault("encrypt", len(rows))
    _secure_delete()
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("webhook_token_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("webhook_token_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_token_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hmac_secrets_encrypted", sa.JSON(), nullable=True))
    sealed = _table(
        sa.column("webhook_token_digest", sa.String),
        sa.column("webhook_token_encrypted", sa.Text),
        sa.column("previous_token_digest", sa.String),
        sa.column("hmac_secrets_encrypted", sa.JSON),
    )
    if vault is not None:  # there are rows to convert
        for row in rows:
            bind.execute(
                sealed.update()
                .where(sealed.c.id == row.id)
                .values(
                    webhook_token_digest=_digest(row.webhook_token),
                    webhook_token_encrypted=vault.encrypt(row.webhook_token),
                    previous_token_digest=_digest(row.previous_token) if row.previous_token else None,
                    hmac_secrets_encrypted=[vault.encrypt(secret) for secret in row.hmac_secrets or ()],
                )
            )
    with op.batch_alter_table("merchants") as batch:
        batch.alter_column("webhook_token_digest", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("webhook_token_encrypted", existing_type=sa.Text(), nullable=False)
        batch.alter_column("hmac_secrets_encrypted", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("webhook_token")
        batch.drop_column("previous_token")
        batch.drop_column("hmac_secrets")


def _digest(token: str) -> str:
    # store.vault.token_digest, frozen here: a migration must not change when the code does
    return hashlib.sha256(token.encode()).hexdigest()


def downgrade() -> None:
    """Back to plain columns. The previous token cannot be recovered from its digest: it is dropped
    (the merchant's current token keeps working)."""
    bind = op.get_bind()
    sealed = _table(
        sa.column("webhook_token_encrypted", sa.Text), sa.column("hmac_secrets_encrypted", sa.JSON)
    )
    rows = bind.execute(sa.select(sealed).order_by(sealed.c.id)).all()
    vault = _vault("decrypt", len(rows))
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("webhook_token", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("previous_token", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("hmac_secrets", sa.JSON(), nullable=True))
    plain = _table(
        sa.column("webhook_token", sa.String),
        sa.column("previous_token", sa.String),
        sa.column("previous_token_expires_at", sa.DateTime),
        sa.column("hmac_secrets", sa.JSON),
    )
    if vault is not None:  # there are rows to convert
        for row in rows:
            bind.execute(
                plain.update()
                .where(plain.c.id == row.id)
                .values(
                    webhook_token=vault.decrypt(row.webhook_token_encrypted),
                    previous_token=None,
                    previous_token_expires_at=None,
                    hmac_secrets=[vault.decrypt(secret) for secret in row.hmac_secrets_encrypted or ()],
                )
            )
    with op.batch_alter_table("merchants") as batch:
        batch.alter_column("webhook_token", existing_type=sa.String(length=128), nullable=False)
        batch.alter_column("hmac_secrets", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("webhook_token_digest")
        batch.drop_column("webhook_token_encrypted")
        batch.drop_column("previous_token_digest")
        batch.drop_column("hmac_secrets_encrypted")
