"""step_intervals: each step's confidence intervals (every reported percentile's, the
throughput's, MLPerf's early-stopping estimates), and steps.warmup_windows (--detect-warmup)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "step_intervals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("percentile", sa.Double(), nullable=True),
        sa.Column("estimate", sa.Double(), nullable=True),
        sa.Column("low", sa.Double(), nullable=True),
        sa.Column("high", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("n_eff", sa.Double(), nullable=True),
        sa.Column("std_error", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_step_intervals_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_step_intervals"),
    )
    op.create_index("ix_step_intervals_step_id", "step_intervals", ["step_id"])
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("warmup_windows", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("warmup_windows")
    op.drop_index("ix_step_intervals_step_id", table_name="step_intervals")
    op.drop_table("step_intervals")
