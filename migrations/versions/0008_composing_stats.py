"""composing_stats: each composing model's /stats delta per step (ensembles, BLS models)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


def upgrade() -> None:
    op.create_table(
        "composing_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("inference_count", sa.BigInteger(), nullable=False),
        sa.Column("execution_count", sa.BigInteger(), nullable=False),
        *(
            sa.Column(f"{name}_{part}", sa.BigInteger(), nullable=False)
            for name in _DURATIONS
            for part in ("count", "ns")
        ),
        sa.Column("batch_stats", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_composing_stats_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_composing_stats"),
    )
    op.create_index("ix_composing_stats_step_id", "composing_stats", ["step_id"])


def downgrade() -> None:
    op.drop_index("ix_composing_stats_step_id", table_name="composing_stats")
    op.drop_table("composing_stats")
