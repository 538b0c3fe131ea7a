"""catalogs as resources: catalog, catalog_version, batch.catalog_version_id

Revision ID: i22_catalogs
Revises: i21_tenants
"""

from alembic import op
import sqlalchemy as sa


revision = "i22_catalogs"
down_revision = "i21_tenants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("source_dir", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "name", name="uq_catalog_tenant_name"),
    )
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("catalog_id", sa.String(32), sa.ForeignKey("catalog.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("content_sha", sa.String(64), nullable=False),
        sa.Column("vocab_version", sa.String(64), nullable=False),
        sa.Column("embed_model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("builder_batch_id", sa.String(32), nullable=True),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("catalog_id", "seq", name="uq_catalog_version_seq"),
    )
    op.create_index("ix_catalog_version_catalog_id", "catalog_version", ["catalog_id"])
    op.add_column("batch", sa.Column("catalog_version_id", sa.Integer(), nullable=True))
    op.create_index("ix_batch_catalog_version_id", "batch", ["catalog_version_id"])


def downgrade() -> None:
    op.drop_index("ix_batch_catalog_version_id", "batch")
    op.drop_column("batch", "catalog_version_id")
    op.drop_index("ix_catalog_version_catalog_id", "catalog_version")
    op.drop_table("catalog_version")
    op.drop_table("catalog")
