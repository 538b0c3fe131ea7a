"""A tenant's running total for the current calendar month (UTC), for its monthly budget: tenant.month
("YYYY-MM") and tenant.month_spent_usd, computed from the charges of this month.

Revision ID: i21_tenant_month
Revises: i25_webhook_tenant
"""

import sqlalchemy as sa
from alembic import op

revision = "i21_tenant_month"
down_revision = "i25_webhook_tenant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenant", sa.Column("month", sa.String(7), nullable=True))
    op.add_column("tenant", sa.Column("month_spent_usd", sa.Float(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE tenant SET month = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'), month_spent_usd = "
        "COALESCE((SELECT SUM(charge.cost_usd) FROM charge JOIN batch ON batch.id = charge.batch_id "
        "WHERE batch.tenant_id = tenant.id AND charge.created_at >= "
        "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)"
    )


def downgrade() -> None:
    op.drop_column("tenant", "month_spent_usd")
    op.drop_column("tenant", "month")
