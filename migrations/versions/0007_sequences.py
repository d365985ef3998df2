"""steps: what a sequence model's step measured: sequences ended, and the latencies of the
requests that start, continue and end a sequence apart, with their full histograms

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PLACES = ("start", "middle", "end")
_FLOATS = tuple(f"sequence_{place}_{p}_us" for place in _PLACES for p in ("p50", "p99"))
_BLOBS = tuple(f"sequence_{place}_histogram" for place in _PLACES)


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("sequence_count", sa.BigInteger(), nullable=True))
        for name in _FLOATS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        for name in _BLOBS:
            batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in reversed((*_FLOATS, *_BLOBS)):
            batch.drop_column(name)
        batch.drop_column("sequence_count")
