"""index orders (merchant_id, id) for the unfiltered, keyset-paginated order listing

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_merchant", "orders", ["merchant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_orders_merchant", table_name="orders")
