"""a running total of each batch's charges

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batch", sa.Column("spent_usd", sa.Float(), server_default="0", nullable=False))
    # batches made before it: their charges so far
    op.execute(
        "UPDATE batch SET spent_usd = COALESCE("
        "(SELECT SUM(charge.cost_usd) FROM charge WHERE charge.batch_id = batch.id), 0)"
    )


def downgrade() -> None:
    op.drop_column("batch", "spent_usd")
