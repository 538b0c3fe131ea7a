"""claims by task id, enqueue time per job, idempotent batch submission

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batch", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.add_column("batch", sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.create_unique_constraint("uq_batch_idempotency_key", "batch", ["idempotency_key"])
    op.add_column("job", sa.Column("claimed_by", sa.String(length=64), nullable=True))
    op.add_column("job", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "enqueued_at")
    op.drop_column("job", "claimed_by")
    op.drop_constraint("uq_batch_idempotency_key", "batch", type_="unique")
    op.drop_column("batch", "request_hash")
    op.drop_column("batch", "idempotency_key")
