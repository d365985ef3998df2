"""initial schema: runs, steps, batch_stats, metric_samples

Revision ID: 0001
Revises:
Create Date: 2024-11-28

Written out in full rather than importing the models: a revision is a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("scenario", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("server_url", sa.String(1024), nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("ended_at", UTC_DATETIME, nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("model_config", sa.JSON(), nullable=False),
        sa.Column("model_metadata", sa.JSON(), nullable=False),
        sa.Column("server_metadata", sa.JSON(), nullable=False),
        sa.Column("host", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_model", "runs", ["model"])

    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("request_rate", sa.Double(), nullable=True),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("inference_count", sa.BigInteger(), nullable=False),
        sa.Column("throughput", sa.Double(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        *(
            sa.Column(f"lat_{name}_us", sa.Double(), nullable=True)
            for name in ("avg", "std", "min", "max", "p50", "p90", "p95", "p99")
        ),
        sa.Column("histogram", sa.LargeBinary(), nullable=False),
        sa.Column("stable", sa.Boolean(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("server_inference_count", sa.BigInteger(), nullable=True),
        sa.Column("server_execution_count", sa.BigInteger(), nullable=True),
        sa.Column("server_success_count", sa.BigInteger(), nullable=True),
        sa.Column("server_fail_count", sa.BigInteger(), nullable=True),
        sa.Column("server_queue_us", sa.Double(), nullable=True),
        sa.Column("server_compute_input_us", sa.Double(), nullable=True),
        sa.Column("server_compute_infer_us", sa.Double(), nullable=True),
        sa.Column("server_compute_output_us", sa.Double(), nullable=True),
        sa.Column("server_request_us", sa.Double(), nullable=True),
        sa.Column("server_stats_reset", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_steps_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
        sa.UniqueConstraint("run_id", "step_index", name="uq_steps_run_id_step_index"),
    )
    op.create_index("ix_steps_run_id", "steps", ["run_id"])

    op.create_table(
        "batch_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("execution_count", sa.BigInteger(), nullable=False),
        sa.Column("compute_input_count", sa.BigInteger(), nullable=False),
        sa.Column("compute_input_ns", sa.BigInteger(), nullable=False),
        sa.Column("compute_infer_count", sa.BigInteger(), nullable=False),
        sa.Column("compute_infer_ns", sa.BigInteger(), nullable=False),
        sa.Column("compute_output_count", sa.BigInteger(), nullable=False),
        sa.Column("compute_output_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_batch_stats_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_batch_stats"),
    )
    op.create_index("ix_batch_stats_step_id", "batch_stats", ["step_id"])

    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name="fk_metric_samples_step_id_steps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_metric_samples"),
    )
    op.create_index("ix_metric_samples_step_id", "metric_samples", ["step_id"])
    op.create_index("ix_metric_samples_name", "metric_samples", ["name"])


def downgrade() -> None:
    op.drop_table("metric_samples")
    op.drop_table("batch_stats")
    op.drop_table("steps")
    op.drop_table("runs")
