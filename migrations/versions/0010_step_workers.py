"""step_workers: each worker's part of a step (--workers, --ray): its node, share, requests,
errors, send lag and clock offset

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "step_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("worker", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("share", sa.String(length=255), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("send_lag_p99_us", sa.Double(), nullable=True),
        sa.Column("clock_offset_us", sa.Double(), nullable=True),
        sa.Column("clock_uncertainty_us", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_step_workers_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_step_workers"),
    )
    op.create_index("ix_step_workers_step_id", "step_workers", ["step_id"])


def downgrade() -> None:
    op.drop_index("ix_step_workers_step_id", table_name="step_workers")
    op.drop_table("step_workers")
