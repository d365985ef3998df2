"""steps: what a streamed step measured (--streaming): responses, time to first response and the
gaps between responses, with their full histograms, and the requests cancelled on purpose

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOATS = (
    "first_response_p50_us",
    "first_response_p99_us",
    "inter_response_p50_us",
    "inter_response_p99_us",
    "responses_per_request",
    "request_output_rate_p50",
)
_BLOBS = ("first_response_histogram", "inter_response_histogram", "responses_histogram", "spacing_histogram")


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("response_count", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cancelled_count", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("token_count", sa.BigInteger(), nullable=True))
        for name in _FLOATS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        for name in _BLOBS:
            batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in reversed((*_FLOATS, *_BLOBS)):
            batch.drop_column(name)
        batch.drop_column("token_count")
        batch.drop_column("cancelled_count")
        batch.drop_column("response_count")
