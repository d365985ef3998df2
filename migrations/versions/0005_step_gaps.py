"""steps: metric scrapes that failed during the step, and steps cut short by a lost server

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("metrics_failed_scrapes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("interrupted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("interrupted")
        batch.drop_column("metrics_failed_scrapes")
