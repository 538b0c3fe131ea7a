"""webhook endpoints belong to a tenant: one for every batch hears that tenant's batches only

Revision ID: i25_webhook_tenant
Revises: i22_catalogs
"""

from alembic import op
import sqlalchemy as sa


revision = "i25_webhook_tenant"
down_revision = "i22_catalogs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing endpoints: the default tenant (the server's own, as the endpoints for every batch were)
    op.add_column("webhook_endpoint", sa.Column("tenant_id", sa.String(64), nullable=False, server_default="default"))
    op.create_index("ix_webhook_endpoint_tenant_id", "webhook_endpoint", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_endpoint_tenant_id", "webhook_endpoint")
    op.drop_column("webhook_endpoint", "tenant_id")
