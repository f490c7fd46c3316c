"""Shippo API: each merchant's API token (encrypted) and its pause state; when a shipment was last
looked up at Shippo (reconciliation)

- ``merchants.shippo_api_token_encrypted``: the token, Fernet-encrypted like the other secrets
  (``store/vault.py``); ``merchants.shippo_api_token_digest``: its SHA-256, so that whether the
  token is set, and whether it is the one Shippo refused, is known without decrypting it.
- ``merchants.shippo_auth_failed_digest`` / ``shippo_auth_failed_at``: the digest of the token
  Shippo answered 401 to, and when. Calls are paused while it equals the current token's digest,
  so a new token resumes them by itself.
- ``shipments.shippo_polled_at`` + an index on ``updated_at``: reconciliation's "heard nothing
  for a while, not looked up for a while" query, oldest first.

All new columns are nullable: existing rows need no conversion and no key.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("shippo_api_token_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("shippo_api_token_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("shippo_auth_failed_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("shippo_auth_failed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("shippo_polled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_shipments_quiet", "shipments", ["updated_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # the encrypted tokens' pages are zeroed, not left behind
    op.drop_index("ix_shipments_quiet", table_name="shipments")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("shippo_polled_at")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("shippo_auth_failed_at")
        batch.drop_column("shippo_auth_failed_digest")
        batch.drop_column("shippo_api_token_digest")
        batch.drop_column("shippo_api_token_encrypted")
