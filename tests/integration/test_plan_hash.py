"""A stored plan is hashed by the database's lines exactly as its items are in memory.

``purge.model.hash_line`` writes an item's line of the content hash in Python (plans
computed in memory: erasure, simulation); ``store.purge_queries.stored_content_hash``
has the database write the same line for stored items (plans stored by SQL, and every
approval and execution). If the two ever disagreed on one value, a plan would be
refused as altered, or worse, an altered one could pass. Checked on both back ends with
values that text conversion could trip on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from mailhygiene.errors import SafetyRefusal
from mailhygiene.policy import Policy
from mailhygiene.purge.approve import verify_plan_integrity
from mailhygiene.purge.model import ItemAction, PlanKind, PlannedMessage, content_hash
from mailhygiene.purge.plan import PlanSummary, store_plan
from mailhygiene.store import purge_queries
from mailhygiene.store.models import Plan, PlanItem, PlanMember
from mailhygiene.store.session import Store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ACCOUNT = "info@promix.se"

AWKWARD = [
    PlannedMessage(1, "INBOX", 1, 1, "<a@x>", 0, None, ItemAction.MOVE, "default", "default", ""),
    PlannedMessage(
        2,
        "Inkorg/Reklamationsärenden",
        4_294_967_295,
        4_294_967_295,
        "<ÅÄÖ åäö 📨 \"quoted\" 'single'@exämple.se>",
        2**40,
        NOW,
        ItemAction.DELETE,
        "rule",
        "bokföring",
        "kept 7 years",
    ),
    PlannedMessage(
        3,
        "a\\b  c",
        7,
        10,
        "no brackets, spaces\u00a0and\u2028odd",
        5,
        None,
        ItemAction.MOVE,
        "no_date",
        "",
        "",
    ),
    PlannedMessage(4, "INBOX", 1, 2, "", 1, None, ItemAction.MOVE, "default", "default", ""),
]


def _store(store: Store, items: list[PlannedMessage]) -> str:
    summary = store_plan(
        store,
        Policy(),
        kind=PlanKind.PURGE,
        account=ACCOUNT,
        items=items,
        now=NOW,
        actor="t",
        note="",
        summary=PlanSummary(
            ref=None,
            kind="",
            account="",
            status="pending",
            created_at=NOW,
            created_by="t",
            planned_for=NOW,
            expires_at=None,
            item_count=0,
            total_bytes=0,
            content_hash="",
            policy_hash="",
        ),
    )
    assert summary.ref is not None
    return summary.ref


def test_the_database_writes_each_items_hash_line_as_python_does(store: Store) -> None:
    ref = _store(store, AWKWARD)
    expected = content_hash(
        kind=PlanKind.PURGE, account=ACCOUNT, policy_hash=Policy().source_hash, items=AWKWARD
    )
    with store.transaction() as session:
        plan = session.scalars(select(Plan).where(Plan.ref == ref)).one()
        assert plan.content_hash == expected
        assert purge_queries.stored_content_hash(session, plan) == (expected, len(AWKWARD))
        verify_plan_integrity(session, plan)
        groups = sorted(purge_queries.item_groups(session, plan.id))
        purge_queries.write_journal(session, plan.id)  # the same, once executing starts
        assert purge_queries.stored_content_hash(session, plan) == (expected, len(AWKWARD))
        verify_plan_integrity(session, plan)
        assert sorted(purge_queries.item_groups(session, plan.id)) == groups
    assert groups == [
        ("INBOX", "default", "default", 2, 1),
        ("Inkorg/Reklamationsärenden", "rule", "bokföring", 1, 2**40),
        ("a\\b  c", "no_date", "", 1, 5),
    ]


@pytest.mark.parametrize("stored_as", [PlanMember, PlanItem], ids=["members", "journal"])
@pytest.mark.parametrize(
    ("column", "value"),
    [("uid", 11), ("uidvalidity", 8), ("size", 6), ("action", "delete"), ("folder", "INBOX ")],
)
def test_a_changed_stored_value_is_refused_as_altered(
    store: Store, column: str, value: object, stored_as: type[PlanMember | PlanItem]
) -> None:
    """Altered where the plan's items are: its members until executing starts, then its
    journal."""
    ref = _store(store, AWKWARD)
    with store.transaction() as session:
        plan = session.scalars(select(Plan).where(Plan.ref == ref)).one()
        if stored_as is PlanItem:
            purge_queries.write_journal(session, plan.id)
        altered = session.execute(
            update(stored_as)
            .where(stored_as.plan_id == plan.id, stored_as.message_row == 3)
            .values({column: value})
        )
        assert altered.rowcount == 1  # type: ignore[attr-defined]
        with pytest.raises(SafetyRefusal, match="altered"):
            verify_plan_integrity(session, plan)
