"""Read-only views of plans for the CLI and the web page."""

from __future__ import annotations

from typing import Any

from mailhygiene.purge.model import PlanStatus
from mailhygiene.purge.plan import PlanSummary, summary_of
from mailhygiene.store import purge_queries
from mailhygiene.store.session import Store


def list_plan_summaries(store: Store, *, account: str | None = None) -> list[PlanSummary]:
    with store.transaction() as session:
        return [summary_of(plan) for plan in purge_queries.list_plans(session, account=account)]


def resumable_plans(store: Store) -> list[str]:
    """Plans whose execution started but did not finish."""
    with store.transaction() as session:
        return [
            plan.ref
            for plan in purge_queries.list_plans(session, limit=1000)
            if plan.status == PlanStatus.EXECUTING.value
        ]


def plan_items_sample(store: Store, ref: str, *, per_reason: int) -> list[dict[str, Any]]:
    """Up to ``per_reason`` items for each reason, for a reviewer to spot-check."""
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref)
        return purge_queries.sample_items(session, plan.id, per_reason=per_reason)
