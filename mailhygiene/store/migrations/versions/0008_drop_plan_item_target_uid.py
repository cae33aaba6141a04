"""drop plan_items.target_uid

Where a moved message landed is kept in the quarantine ledger
(``quarantine.quarantine_uid``, by ``plan_item_id``); the journal's own copy was written
for every moved message and read by nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plan_items") as batch:
        batch.drop_column("target_uid")


def downgrade() -> None:
    with op.batch_alter_table("plan_items") as batch:
        batch.add_column(sa.Column("target_uid", sa.BigInteger(), nullable=True))
