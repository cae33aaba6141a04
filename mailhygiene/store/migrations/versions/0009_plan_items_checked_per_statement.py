"""plan_items: PostgreSQL checks the plan reference once per statement

A plan stores one journal row per message in one ``INSERT … SELECT`` (77k rows for a
100k mailbox). PostgreSQL checks a foreign key row by row: one lookup and key-share lock
of the same ``plans`` row per item, about a third of the 1.3 s ``purge plan`` at 100k
(``EXPLAIN ANALYZE`` of that insert: 0.74 s with the key, 0.39 s with these triggers).

On PostgreSQL the foreign key is replaced by triggers that give the same guarantees once
per statement, in the database: inserted items must name existing plans (which are
key-share locked, as the foreign key does, so a plan cannot vanish under them); an item's
plan never changes; deleting plans deletes their items (the key's ``ON DELETE CASCADE``).
A violation raises SQLSTATE 23503 (``foreign_key_violation``), as the key did. SQLite
keeps its foreign key: it checks rows cheaply, in the same process.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 02:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_FOREIGN_KEY = "fk_plan_items_plan_id_plans"

# why: ``SET search_path FROM CURRENT`` pins the schema the functions were created in, so
# they never resolve ``plans`` to another schema's table (the tests share one server)
_UPGRADE = (
    f"ALTER TABLE plan_items DROP CONSTRAINT {_FOREIGN_KEY}",
    """
    CREATE FUNCTION plan_items_name_plans() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    DECLARE
        named integer[];
        locked integer;
        missing integer;
    BEGIN
        named := ARRAY(SELECT DISTINCT plan_id FROM new_items);
        PERFORM 1 FROM plans WHERE id = ANY (named) FOR KEY SHARE;
        GET DIAGNOSTICS locked = ROW_COUNT;
        IF locked < cardinality(named) THEN
            SELECT n INTO missing FROM unnest(named) AS n
                WHERE NOT EXISTS (SELECT 1 FROM plans p WHERE p.id = n) LIMIT 1;
            RAISE EXCEPTION 'plan_items names plan % which does not exist', missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER plan_items_name_plans AFTER INSERT ON plan_items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION plan_items_name_plans()
    """,
    """
    CREATE FUNCTION plan_items_keep_their_plan() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        RAISE EXCEPTION 'plan item % belongs to plan % and cannot move to another plan',
            OLD.id, OLD.plan_id USING ERRCODE = 'foreign_key_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER plan_items_keep_their_plan BEFORE UPDATE OF plan_id ON plan_items
    FOR EACH ROW WHEN (OLD.plan_id IS DISTINCT FROM NEW.plan_id)
    EXECUTE FUNCTION plan_items_keep_their_plan()
    """,
    """
    CREATE FUNCTION plans_delete_their_items() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        DELETE FROM plan_items WHERE plan_id IN (SELECT id FROM gone_plans);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER plans_delete_their_items AFTER DELETE ON plans
    REFERENCING OLD TABLE AS gone_plans
    FOR EACH STATEMENT EXECUTE FUNCTION plans_delete_their_items()
    """,
)

_DOWNGRADE = (
    "DROP TRIGGER plans_delete_their_items ON plans",
    "DROP FUNCTION plans_delete_their_items()",
    "DROP TRIGGER plan_items_keep_their_plan ON plan_items",
    "DROP FUNCTION plan_items_keep_their_plan()",
    "DROP TRIGGER plan_items_name_plans ON plan_items",
    "DROP FUNCTION plan_items_name_plans()",
    f"ALTER TABLE plan_items ADD CONSTRAINT {_FOREIGN_KEY} FOREIGN KEY (plan_id) "
    "REFERENCES plans (id) ON DELETE CASCADE",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DOWNGRADE:
            op.execute(statement)
