"""Tenants: a tenant table (with the default tenant), tenant_id on batch and api_token (existing rows in
the default tenant), token roles and expiry, idempotency keys unique per tenant.

Revision ID: i21_tenants
Revises: i25_review_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "i21_tenants"
down_revision = "i25_review_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("monthly_budget_usd", sa.Float(), nullable=True),
    )
    op.execute("INSERT INTO tenant (id, created_at) VALUES ('default', now())")
    for table in ("batch", "api_token"):
        op.add_column(table, sa.Column("tenant_id", sa.String(64), nullable=False, server_default="default"))
        op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
    op.add_column("api_token", sa.Column("role", sa.String(16), nullable=False, server_default="operate"))
    op.add_column("api_token", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("uq_batch_idempotency_key", "batch", type_="unique")
    op.create_unique_constraint("uq_batch_tenant_idempotency_key", "batch", ["tenant_id", "idempotency_key"])


def downgrade() -> None:
    op.drop_constraint("uq_batch_tenant_idempotency_key", "batch", type_="unique")
    op.create_unique_constraint("uq_batch_idempotency_key", "batch", ["idempotency_key"])
    op.drop_column("api_token", "expires_at")
    op.drop_column("api_token", "role")
    for table in ("batch", "api_token"):
        op.drop_index(f"ix_{table}_tenant_id", table)
        op.drop_column(table, "tenant_id")
    op.drop_table("tenant")
