"""quarantine_doubts: what a move in doubt put in quarantine, until it is checked

A server that warns while moving (Dovecot, when another client recreated the selected
folder, moves the UIDs' new owners and says ``* NO Internal error``, sometimes ``* BYE``
first) may have moved mail that was not planned. What its COPYUID says it moved is
recorded here before the batch is settled, so that a run that stops in between leaves
the check (and putting back what no plan item claims) to the next one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailhygiene.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine_doubts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("plan_ref", sa.String(length=40), nullable=False),
        sa.Column("original_folder", sa.String(length=1000), nullable=False),
        sa.Column("quarantine_folder", sa.String(length=1000), nullable=False),
        sa.Column("quarantine_uid", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", mailhygiene.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_doubts")),
    )
    with op.batch_alter_table("quarantine_doubts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_doubts_account"), ["account"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine_doubts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_doubts_account"))
    op.drop_table("quarantine_doubts")
