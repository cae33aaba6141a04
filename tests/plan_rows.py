"""Plans stored directly, for tests of the journal's tables rather than of planning."""

from __future__ import annotations

from datetime import datetime

from mailhygiene.purge.model import ItemAction, PlanKind, PlannedMessage
from mailhygiene.store import purge_queries
from mailhygiene.store.models import Plan
from mailhygiene.store.session import Store


def numbered_items(count: int) -> list[PlannedMessage]:
    """``count`` moves of INBOX messages 1..count (UID n, size n, Message-ID ``<mn@x>``)."""
    return [
        PlannedMessage(n, "INBOX", 7, n, f"<m{n}@x>", n, None, ItemAction.MOVE, "d", "d", "")
        for n in range(1, count + 1)
    ]


def store_plan_of(
    store: Store,
    count: int,
    *,
    at: datetime,
    ref: str = "P-1",
    status: str = "approved",
    journal: bool = True,
) -> int:
    """Store a plan of ``numbered_items(count)`` as it is (no hash, no audit); its id.
    With ``journal``, its journal is written (as executing it starts by doing); without,
    its items stay its members."""
    with store.transaction() as session:
        plan = Plan(
            ref=ref,
            kind=PlanKind.PURGE.value,
            account="a",
            status=status,
            created_at=at,
            created_by="t",
            planned_for=at,
            expires_at=at,
            policy_hash="p",
            content_hash="c",
            item_count=count,
            total_bytes=0,
            summary="{}",
            note="",
        )
        purge_queries.insert_plan(session, plan, numbered_items(count))
        if journal:
            purge_queries.write_journal(session, plan.id)
        return plan.id
