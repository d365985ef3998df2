"""open-loop step columns: send rate, refusals, service-time and send-lag histograms

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOATS = (
    "send_rate",
    "service_p50_us",
    "service_p99_us",
    "send_lag_p50_us",
    "send_lag_p99_us",
    "send_lag_max_us",
)
_INTS = ("sent_count", "scheduled_count", "refused_count", "in_flight_at_end")
_BLOBS = ("service_histogram", "send_lag_histogram")


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in _FLOATS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        for name in _INTS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("behind_schedule", sa.Boolean(), nullable=True))
        for name in _BLOBS:
            batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in (*_BLOBS, "behind_schedule", *_INTS, *_FLOATS):
            batch.drop_column(name)
