"""trace_samples: Triton's traces of sampled requests joined to the client's times (--trace-rate),
and steps.untraced_throughput: the same load measured for one window with tracing off

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMES = (
    "client_us",
    "server_us",
    "queue_us",
    "compute_us",
    "compute_input_us",
    "compute_infer_us",
    "compute_output_us",
    "outside_us",
)


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("untraced_throughput", sa.Double(), nullable=True))
    op.create_table(
        "trace_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Double(), nullable=True) for name in _TIMES),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_trace_samples_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trace_samples"),
    )
    op.create_index("ix_trace_samples_step_id", "trace_samples", ["step_id"])


def downgrade() -> None:
    op.drop_index("ix_trace_samples_step_id", table_name="trace_samples")
    op.drop_table("trace_samples")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("untraced_throughput")
