"""job.digest: the render stage's digest beside the job's result, filled from the results already there,
and three indexes a batch's summary reads instead of its job and charge rows (counts by kind/stage/state,
digests, a stage's spend): GET /batches/{id} on a 100,000-SKU batch, bench/bench_api.py.

Revision ID: i21_job_digest
Revises: i21_tenant_month
"""

import sqlalchemy as sa
from alembic import op

revision = "i21_job_digest"
down_revision = "i21_tenant_month"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job", sa.Column("digest", sa.Text(), nullable=True))
    # the render stage's result is stored under its stage name, "render" when this migration was written
    op.execute(
        "UPDATE job SET digest = (result::jsonb -> 'render' -> 'digest')::text "
        "WHERE kind = 'sku' AND (result::jsonb -> 'render' -> 'digest') IS NOT NULL"
    )
    op.create_index("ix_job_batch_counts", "job", ["batch_id", "kind", "stage", "state"])
    op.create_index(
        "ix_job_batch_digest", "job", ["batch_id", "digest"], postgresql_where=sa.text("digest IS NOT NULL")
    )
    op.create_index("ix_charge_batch_stage_cost", "charge", ["batch_id", "stage", "cost_usd"])


def downgrade() -> None:
    op.drop_index("ix_charge_batch_stage_cost", "charge")
    op.drop_index("ix_job_batch_digest", "job")
    op.drop_index("ix_job_batch_counts", "job")
    op.drop_column("job", "digest")
