"""Paged, read-only views of plans and the quarantine for the web page.

A manager's disposition review of one plan (:func:`plan_review`): its totals by folder and
by rule, a sample of messages for each rule with the reason, what the policy kept
(holds, cases, undated mail), who has approved it, whether a second manager must, and how
it differs from the plan made before it for the same account. Long lists page by key
(:func:`reason_page`, :func:`quarantine_page`, :func:`plan_list`), never by loading a
whole plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailhygiene.errors import NotFoundError
from mailhygiene.policy import Policy
from mailhygiene.purge.approve import is_bulk
from mailhygiene.purge.plan import PlanSummary, summary_of
from mailhygiene.store import browse_queries, purge_queries
from mailhygiene.store.browse_queries import PlanItemRow, QuarantineRow
from mailhygiene.store.session import Store


@dataclass(frozen=True)
class PlanListPage:
    plans: list[PlanSummary]
    next_before: int | None


@dataclass(frozen=True)
class ReasonSample:
    """One rule (``kind:name``) of a plan: its totals and the first few messages."""

    reason: str
    messages: int
    bytes: int
    items: list[PlanItemRow]


@dataclass(frozen=True)
class Change:
    """One line of a plan diff: a folder or rule with its count now and before."""

    key: str
    now: int
    before: int

    @property
    def delta(self) -> int:
        return self.now - self.before


@dataclass(frozen=True)
class PlanDiff:
    """This plan against the one made before it for the same account.

    ``common`` messages are in both; ``added`` only here; ``dropped`` only before (kept
    now, or already gone).
    """

    previous: PlanSummary
    common: int
    added: int
    dropped: int
    by_reason: list[Change]
    by_folder: list[Change]


@dataclass(frozen=True)
class Decision:
    by: str
    at: datetime
    decision: str
    comment: str
    current: bool


@dataclass(frozen=True)
class PlanReview:
    summary: PlanSummary
    bulk: bool
    needs_second_approver: bool
    decisions: list[Decision]
    samples: list[ReasonSample]
    states: dict[str, int]
    diff: PlanDiff | None


@dataclass(frozen=True)
class ReasonPage:
    ref: str
    reason: str
    items: list[PlanItemRow]
    next_after: int | None


@dataclass(frozen=True)
class QuarantinePage:
    account: str
    plan_ref: str | None
    total: int
    bytes: int
    entries: list[QuarantineRow]
    next_after: int | None


def plan_list(
    store: Store, *, before_id: int | None, limit: int, statuses: tuple[str, ...] = ()
) -> PlanListPage:
    """Plans newest first, ``limit`` at a time (``next_before`` continues)."""
    with store.transaction() as session:
        rows = browse_queries.plan_page(
            session, before_id=before_id, limit=limit + 1, statuses=statuses
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return PlanListPage(
        [summary_of(plan) for _id, plan in rows], rows[-1][0] if more and rows else None
    )


def plan_review(store: Store, policy: Policy, ref: str, *, per_reason: int) -> PlanReview:
    """Everything a manager needs to approve or reject plan ``ref``."""
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref)
        summary = summary_of(plan)
        decisions = [
            Decision(
                a.approved_by,
                a.approved_at,
                a.decision,
                a.comment,
                a.content_hash == plan.content_hash,
            )
            for a in purge_queries.approvals(session, plan.id)
        ]
        samples = []
        for reason, totals in summary.by_reason.items():
            kind, _sep, name = reason.partition(":")
            items = browse_queries.reason_items(
                session,
                plan.id,
                reason_kind=kind,
                reason_name=name,
                after_id=None,
                limit=per_reason,
            )
            samples.append(
                ReasonSample(reason, totals.get("messages", 0), totals.get("bytes", 0), items)
            )
        states = browse_queries.item_states(session, plan.id)
        previous = browse_queries.previous_plan(session, plan)
        diff = None
        if previous is not None:
            common = browse_queries.common_items(session, plan.id, previous.id)
            before = summary_of(previous)
            diff = PlanDiff(
                previous=before,
                common=common,
                added=plan.item_count - common,
                dropped=previous.item_count - common,
                by_reason=_changes(summary.by_reason, before.by_reason),
                by_folder=_changes(summary.by_folder, before.by_folder),
            )
        bulk = is_bulk(plan, policy)
        approved_by = {d.by for d in decisions if d.decision == "approve" and d.current}
        needs_second = bulk and not (approved_by - {plan.created_by})
    return PlanReview(summary, bulk, needs_second, decisions, samples, states, diff)


def reason_page(
    store: Store, ref: str, reason: str, *, after_id: int | None, limit: int
) -> ReasonPage:
    """Every message a plan removes for one rule (``kind:name``), ``limit`` at a time."""
    kind, sep, name = reason.partition(":")
    if not sep:
        raise NotFoundError(f"no rule {reason!r} in plan {ref}")
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref)
        items = browse_queries.reason_items(
            session,
            plan.id,
            reason_kind=kind,
            reason_name=name,
            after_id=after_id,
            limit=limit + 1,
        )
    more = len(items) > limit
    items = items[:limit]
    return ReasonPage(ref, reason, items, items[-1].id if more and items else None)


def quarantine_page(
    store: Store, *, account: str, after_id: int | None, limit: int, plan_ref: str | None = None
) -> QuarantinePage:
    """Mail waiting in quarantine, oldest first, ``limit`` at a time."""
    with store.transaction() as session:
        totals = browse_queries.quarantine_totals(session, account=account, plan_ref=plan_ref)
        entries = browse_queries.quarantine_page(
            session, account=account, after_id=after_id, limit=limit + 1, plan_ref=plan_ref
        )
    more = len(entries) > limit
    entries = entries[:limit]
    return QuarantinePage(
        account,
        plan_ref,
        totals.messages,
        totals.bytes,
        entries,
        entries[-1].id if more and entries else None,
    )


def _changes(now: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> list[Change]:
    keys = sorted(set(now) | set(before))
    return [
        Change(key, now.get(key, {}).get("messages", 0), before.get(key, {}).get("messages", 0))
        for key in keys
    ]


__all__ = [
    "Change",
    "Decision",
    "PlanDiff",
    "PlanListPage",
    "PlanReview",
    "QuarantinePage",
    "ReasonPage",
    "ReasonSample",
    "plan_list",
    "plan_review",
    "quarantine_page",
    "reason_page",
]
