"""plan_members: a plan is stored as its members; the journal is written when it executes

``purge plan`` at 100k wrote 77k journal rows into ``plan_items``, each entered in two
B-trees (the primary key and (plan_id, state)): 0.6 s of a 1 s plan on PostgreSQL.
The members carry the same columns but the journal's four; on PostgreSQL they have no
B-tree at all (a plan's members are only ever read together, by a BRIN index on
``plan_id``) and take their ids from the journal's sequence, so that ``purge execute``
copies them into ``plan_items`` as they are. On SQLite the ids come from an
autoincrement seeded past the journal's, for the same reason.

``plan_id`` is checked as in ``plan_items`` (migration 0009): a foreign key on SQLite,
per-statement triggers on PostgreSQL, and deleting a plan deletes its members.

Downgrading writes every member to the journal first: no plan loses its items.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailhygiene.store.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = (
    "id, plan_id, message_row, folder, uidvalidity, uid, message_id, size, internal_date, "
    "action, reason_kind, reason_name, reason_detail"
)

# why: ``SET search_path FROM CURRENT`` as in 0009 (the tests share one server)
_POSTGRESQL_UPGRADE = (
    """
    CREATE FUNCTION plan_members_name_plans() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    DECLARE
        named integer[];
        locked integer;
        missing integer;
    BEGIN
        named := ARRAY(SELECT DISTINCT plan_id FROM new_members);
        PERFORM 1 FROM plans WHERE id = ANY (named) FOR KEY SHARE;
        GET DIAGNOSTICS locked = ROW_COUNT;
        IF locked < cardinality(named) THEN
            SELECT n INTO missing FROM unnest(named) AS n
                WHERE NOT EXISTS (SELECT 1 FROM plans p WHERE p.id = n) LIMIT 1;
            RAISE EXCEPTION 'plan_members names plan % which does not exist', missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER plan_members_name_plans AFTER INSERT ON plan_members
    REFERENCING NEW TABLE AS new_members
    FOR EACH STATEMENT EXECUTE FUNCTION plan_members_name_plans()
    """,
    """
    CREATE TRIGGER plan_members_keep_their_plan BEFORE UPDATE OF plan_id ON plan_members
    FOR EACH ROW WHEN (OLD.plan_id IS DISTINCT FROM NEW.plan_id)
    EXECUTE FUNCTION plan_items_keep_their_plan()
    """,
    """
    CREATE OR REPLACE FUNCTION plans_delete_their_items() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        DELETE FROM plan_items WHERE plan_id IN (SELECT id FROM gone_plans);
        DELETE FROM plan_members WHERE plan_id IN (SELECT id FROM gone_plans);
        RETURN NULL;
    END
    $$
    """,
)

_POSTGRESQL_DOWNGRADE = (
    """
    CREATE OR REPLACE FUNCTION plans_delete_their_items() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        DELETE FROM plan_items WHERE plan_id IN (SELECT id FROM gone_plans);
        RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER plan_members_keep_their_plan ON plan_members",
    "DROP TRIGGER plan_members_name_plans ON plan_members",
    "DROP FUNCTION plan_members_name_plans()",
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    identity = (
        # why: no primary key index: see the module docstring
        sa.Column(
            "id",
            sa.Integer(),
            server_default=sa.text("nextval('plan_items_id_seq'::regclass)"),
            nullable=False,
        )
        if postgresql
        else sa.Column("id", sa.Integer(), primary_key=True, nullable=False)
    )
    op.create_table(
        "plan_members",
        identity,
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("message_row", sa.Integer(), nullable=True),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("internal_date", mailhygiene.store.models.UTCDateTime(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("reason_kind", sa.String(length=30), nullable=False),
        sa.Column("reason_name", sa.String(length=200), nullable=False),
        sa.Column("reason_detail", sa.Text(), nullable=False),
        *(
            ()
            if postgresql
            else (
                sa.ForeignKeyConstraint(
                    ["plan_id"],
                    ["plans.id"],
                    name=op.f("fk_plan_members_plan_id_plans"),
                    ondelete="CASCADE",
                ),
            )
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_plan_members_plan", "plan_members", ["plan_id"], postgresql_using="brin")
    if postgresql:
        for statement in _POSTGRESQL_UPGRADE:
            op.execute(statement)
    else:
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) "
            "SELECT 'plan_members', coalesce(max(id), 0) FROM plan_items"
        )


def downgrade() -> None:
    op.execute(
        f"INSERT INTO plan_items ({_COLUMNS}, state, outcome) "  # noqa: S608 - constant
        f"SELECT {_COLUMNS}, 'planned', '' FROM plan_members"
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL_DOWNGRADE:
            op.execute(statement)
    op.drop_index("ix_plan_members_plan", table_name="plan_members")
    op.drop_table("plan_members")
