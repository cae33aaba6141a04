"""A journal row always belongs to a plan that exists, on both back ends.

SQLite checks ``plan_items.plan_id`` with its foreign key; PostgreSQL with triggers that
check each statement once (migration 0009). These tests pin that both refuse and cascade
alike, so a plan's journal can never hold rows no plan accounts for.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from mailhygiene.store import purge_queries
from mailhygiene.store.models import Plan, PlanItem
from mailhygiene.store.session import Store
from tests.plan_rows import numbered_items, store_plan_of
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
MISSING_PLAN = 987_654


def _plan(store: Store, ref: str, count: int) -> int:
    return store_plan_of(store, count, at=NOW, ref=ref, status="pending")


def _items_per_plan(store: Store) -> dict[int, int]:
    with store.transaction() as session:
        rows = session.execute(select(PlanItem.plan_id, func.count()).group_by(PlanItem.plan_id))
        return {plan_id: count for plan_id, count in rows}  # noqa: C416 - dict(Result) misreads


def test_items_of_a_plan_that_does_not_exist_are_refused(store: Store) -> None:
    with pytest.raises(IntegrityError), store.transaction() as session:
        purge_queries.insert_items(session, MISSING_PLAN, numbered_items(3))
    assert _items_per_plan(store) == {}


def test_one_orphan_refuses_the_whole_statement(store: Store) -> None:
    plan_id = _plan(store, "P-1", 0)
    values = (
        "INSERT INTO plan_items (plan_id, folder, uidvalidity, uid, message_id, size, action, "
        "reason_kind, reason_name, reason_detail, state, outcome) VALUES "
        "(:good, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', '', 'planned', ''), "
        "(:bad, 'INBOX', 7, 2, '<b@x>', 1, 'move', 'd', 'd', '', 'planned', '')"
    )
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(text(values), {"good": plan_id, "bad": MISSING_PLAN})
    assert _items_per_plan(store) == {}


def test_an_item_cannot_be_moved_to_a_plan_that_does_not_exist(store: Store) -> None:
    plan_id = _plan(store, "P-1", 2)
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(
            update(PlanItem).where(PlanItem.plan_id == plan_id).values(plan_id=MISSING_PLAN)
        )
    assert _items_per_plan(store) == {plan_id: 2}


def test_deleting_a_plan_deletes_its_items_and_no_others(store: Store) -> None:
    kept = _plan(store, "P-1", 3)
    by_statement = _plan(store, "P-2", 4)
    by_session = _plan(store, "P-3", 5)
    with store.transaction() as session:
        session.execute(delete(Plan).where(Plan.id == by_statement))
    with store.transaction() as session:
        session.delete(session.get_one(Plan, by_session))
    assert _items_per_plan(store) == {kept: 3}


_INSERT_INTO_SCHEMA = (
    'INSERT INTO "{schema}".plan_items (plan_id, folder, uidvalidity, uid, message_id, '
    "size, action, reason_kind, reason_name, reason_detail, state, outcome) VALUES "
    "(:plan, 'INBOX', 7, 1, '<a@x>', 1, 'move', 'd', 'd', '', 'planned', '')"
)


def _insert_with_search_path_elsewhere(store: Store, plan_id: int) -> None:
    with store.transaction() as session:
        session.execute(text("SET LOCAL search_path TO public"))
        session.execute(text(_INSERT_INTO_SCHEMA.format(schema=store.schema)), {"plan": plan_id})


def test_the_checks_read_their_own_schema_whatever_the_sessions_search_path(
    store: Store,
) -> None:
    """PostgreSQL: the triggers see this schema's ``plans`` from a session set elsewhere."""
    if store.schema is None:
        pytest.skip("SQLite has no schemas")
    plan_id = _plan(store, "P-1", 0)
    _insert_with_search_path_elsewhere(store, plan_id)
    with pytest.raises(IntegrityError):
        _insert_with_search_path_elsewhere(store, MISSING_PLAN)
    assert _items_per_plan(store) == {plan_id: 1}
