"""merchant-scoped API keys; template versions

- ``merchant_keys``: one row per key a merchant was given. Only the key's SHA-256 digest is
  stored (the key is shown once, at creation); ``prefix`` is its first characters, to tell keys
  apart in a listing; ``last_used_at`` is refreshed when it authenticates; ``revoked_at`` set
  means it no longer works (rows are kept for the record).
- ``template_versions``: every save of a merchant template keeps a version: who saved it, when,
  what it was, and a summary of what changed. ``(merchant_id, kind, channel, locale, version)``
  is unique, so two concurrent saves cannot both become version N.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_keys_merchant_id_merchants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_keys"),
        sa.UniqueConstraint("digest", name="uq_merchant_keys_digest"),
    )
    op.create_index("ix_merchant_keys_merchant", "merchant_keys", ["merchant_id", "id"])
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),  # null: the version is "back to the default"
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("saved_by", sa.String(length=200), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_template_versions_merchant_id_merchants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_template_versions"),
        sa.UniqueConstraint(
            "merchant_id", "kind", "channel", "locale", "version", name="uq_template_versions_version"
        ),
    )


def downgrade() -> None:
    op.drop_table("template_versions")
    op.drop_index("ix_merchant_keys_merchant", table_name="merchant_keys")
    op.drop_table("merchant_keys")
