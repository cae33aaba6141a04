"""A plan's stored items always belong to a plan that exists, on both back ends: its
members (``plan_members``, until it executes) and its journal (``plan_items``).

SQLite checks ``plan_id`` with foreign keys; PostgreSQL with triggers that check each
statement once (migrations 0009 and 0010). These tests pin that both refuse and cascade
alike, so no plan's items can hold rows no plan accounts for.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from mailhygiene.store import purge_queries
from mailhygiene.store.models import Plan, PlanItem, PlanMember
from mailhygiene.store.session import Store
from tests.plan_rows import numbered_items, store_plan_of
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
MISSING_PLAN = 987_654


def _plan(store: Store, ref: str, count: int) -> int:
    return store_plan_of(store, count, at=NOW, ref=ref, status="pending")


def _items_per_plan(store: Store, table: type[PlanItem | PlanMember] = PlanItem) -> dict[int, int]:
    with store.transaction() as session:
        rows = session.execute(select(table.plan_id, func.count()).group_by(table.plan_id))
        return {plan_id: count for plan_id, count in rows}  # noqa: C416 - dict(Result) misreads


def _members_plan(store: Store, ref: str, count: int) -> int:
    """A pending plan whose items are still its members."""
    return store_plan_of(store, count, at=NOW, ref=ref, status="pending", journal=False)


def test_members_of_a_plan_that_does_not_exist_are_refused(store: Store) -> None:
    with pytest.raises(IntegrityError), store.transaction() as session:
        purge_queries.insert_members(session, MISSING_PLAN, numbered_items(3))
    assert _items_per_plan(store, PlanMember) == {}


_ROWS = {
    "plan_items": (
        "INSERT INTO plan_items (plan_id, folder, uidvalidity, uid, message_id, size, action, "
        "reason_kind, reason_name, reason_detail, state, outcome) VALUES "
        "(:good, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', '', 'planned', ''), "
        "(:bad, 'INBOX', 7, 2, '<b@x>', 1, 'move', 'd', 'd', '', 'planned', '')"
    ),
    "plan_members": (
        "INSERT INTO plan_members (plan_id, folder, uidvalidity, uid, message_id, size, action, "
        "reason_kind, reason_name, reason_detail) VALUES "
        "(:good, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', ''), "
        "(:bad, 'INBOX', 7, 2, '<b@x>', 1, 'move', 'd', 'd', '')"
    ),
}
_TABLES = {"plan_items": PlanItem, "plan_members": PlanMember}


@pytest.mark.parametrize("table", sorted(_ROWS))
def test_one_orphan_refuses_the_whole_statement(store: Store, table: str) -> None:
    plan_id = _plan(store, "P-1", 0)
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(text(_ROWS[table]), {"good": plan_id, "bad": MISSING_PLAN})
    assert _items_per_plan(store, _TABLES[table]) == {}


@pytest.mark.parametrize("table", sorted(_ROWS))
def test_an_item_cannot_be_moved_to_a_plan_that_does_not_exist(store: Store, table: str) -> None:
    stored = _TABLES[table]
    plan_id = (_plan if stored is PlanItem else _members_plan)(store, "P-1", 2)
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(
            update(stored).where(stored.plan_id == plan_id).values(plan_id=MISSING_PLAN)
        )
    assert _items_per_plan(store, stored) == {plan_id: 2}


@pytest.mark.parametrize("table", sorted(_ROWS))
def test_deleting_a_plan_deletes_its_items_and_no_others(store: Store, table: str) -> None:
    stored = _TABLES[table]
    make = _plan if stored is PlanItem else _members_plan
    kept = make(store, "P-1", 3)
    by_statement = make(store, "P-2", 4)
    by_session = make(store, "P-3", 5)
    with store.transaction() as session:
        session.execute(delete(Plan).where(Plan.id == by_statement))
    with store.transaction() as session:
        session.delete(session.get_one(Plan, by_session))
    assert _items_per_plan(store, stored) == {kept: 3}


_ONE_ROW_INTO_SCHEMA = {
    "plan_items": (
        'INSERT INTO "{schema}".plan_items (plan_id, folder, uidvalidity, uid, message_id, '
        "size, action, reason_kind, reason_name, reason_detail, state, outcome) VALUES "
        "(:plan, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', '', 'planned', '')"
    ),
    "plan_members": (
        'INSERT INTO "{schema}".plan_members (plan_id, folder, uidvalidity, uid, message_id, '
        "size, action, reason_kind, reason_name, reason_detail) VALUES "
        "(:plan, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', '')"
    ),
}


def _insert_with_search_path_elsewhere(store: Store, table: str, plan_id: int) -> None:
    with store.transaction() as session:
        session.execute(text("SET LOCAL search_path TO public"))
        statement = _ONE_ROW_INTO_SCHEMA[table].format(schema=store.schema)
        session.execute(text(statement), {"plan": plan_id})


@pytest.mark.parametrize("table", sorted(_ONE_ROW_INTO_SCHEMA))
def test_the_checks_read_their_own_schema_whatever_the_sessions_search_path(
    store: Store, table: str
) -> None:
    """PostgreSQL: the triggers see this schema's ``plans`` from a session set elsewhere."""
    if store.schema is None:
        pytest.skip("SQLite has no schemas")
    plan_id = _plan(store, "P-1", 0)
    _insert_with_search_path_elsewhere(store, table, plan_id)
    with pytest.raises(IntegrityError):
        _insert_with_search_path_elsewhere(store, table, MISSING_PLAN)
    assert _items_per_plan(store, _TABLES[table]) == {plan_id: 1}
    with store.transaction() as session:
        session.execute(text("SET LOCAL search_path TO public"))
        session.execute(
            text(f'DELETE FROM "{store.schema}".plans WHERE id = :plan'),  # noqa: S608
            {"plan": plan_id},
        )
    assert _items_per_plan(store, _TABLES[table]) == {}
