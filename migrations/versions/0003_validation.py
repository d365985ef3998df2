"""output-check step columns (--validate): answers checked, mismatched, swapped, worst differences

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INTS = ("validated_count", "mismatch_count", "swapped_count")
_FLOATS = ("max_abs_diff", "max_rel_diff")


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in _INTS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        for name in _FLOATS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        batch.add_column(sa.Column("validation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in ("validation", *_FLOATS, *_INTS):
            batch.drop_column(name)
