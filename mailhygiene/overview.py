"""The dashboard's figures: mailbox size over time, purges, cases, holds, plans, requests.

Everything is derived from records that exist anyway — no table of its own:

* **Mailbox size over time** is reconstructed for each month's start: the indexed mail
  received before it, plus the mail deleted for good since (tombstones keep each deleted
  message's date and size). Mail people deleted in their own client leaves no record and
  is not counted; nor is mail whose tombstones have outlived ``tombstone_keep``.
* **Purged per run** is what each finished plan moved or deleted (its journal).
* **Last scheduled run** is the newest ``run:scheduled`` audit entry.

Each figure is one aggregate query (or one bounded list), so the page costs the same on
a 100k-message index as on a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailhygiene.holds import HoldView, list_holds
from mailhygiene.policy import Policy
from mailhygiene.purge.plan import PlanSummary, summary_of
from mailhygiene.store import audit_queries, browse_queries
from mailhygiene.store.session import Store

MONTHS = 12
_RECENT_RUNS = 10
_LISTED = 20


@dataclass(frozen=True)
class SizePoint:
    """The mailbox as it was at ``at`` (the start of a month, or now for the last point)."""

    label: str
    at: datetime
    messages: int
    bytes: int


@dataclass(frozen=True)
class PurgeRun:
    ref: str
    kind: str
    account: str
    finished_at: datetime | None
    messages: int
    bytes: int


@dataclass(frozen=True)
class RequestDue:
    ref: str
    kind: str
    requested_at: datetime
    due_at: datetime
    days_left: int


@dataclass(frozen=True)
class LastRun:
    at: datetime
    account: str
    status: str
    details: dict[str, Any]
    hours_ago: float


@dataclass(frozen=True)
class Dashboard:
    at: datetime
    size: list[SizePoint]
    undated: browse_queries.Bucket
    purge_runs: list[PurgeRun]
    open_cases: int
    holds: list[HoldView]
    pending_plans: list[PlanSummary]
    requests_open: int
    requests: list[RequestDue]
    last_run: LastRun | None


def dashboard(store: Store, policy: Policy, *, now: datetime) -> Dashboard:
    """Every figure of the dashboard at ``now``."""
    boundaries = month_starts(now, policy, MONTHS)
    with store.transaction() as session:
        present = browse_queries.messages_by_interval(session, boundaries)
        deleted = browse_queries.deletions_by_interval(session, boundaries)
        finished = browse_queries.finished_plans(session, limit=_RECENT_RUNS)
        done = browse_queries.done_per_plan(session, [plan_id for plan_id, _p in finished])
        runs = [
            PurgeRun(
                plan.ref,
                plan.kind,
                plan.account,
                plan.finished_at,
                done.get(plan_id, browse_queries.Bucket(0, 0)).messages,
                done.get(plan_id, browse_queries.Bucket(0, 0)).bytes,
            )
            for plan_id, plan in finished
        ]
        pending = [
            summary_of(plan)
            for _id, plan in browse_queries.plan_page(
                session,
                before_id=None,
                limit=_LISTED,
                statuses=("pending", "approved", "executing"),
            )
        ]
        open_cases = browse_queries.count_open_cases(session)
        requests_open, requests = browse_queries.open_requests(session, limit=_LISTED)
        entries = audit_queries.select_entries(session, tag="run:scheduled", limit=1)
    last_run = None
    if entries:
        entry = entries[0]
        last_run = LastRun(
            at=entry.at,
            account=entry.subject,
            status=str(entry.data.get("status", "")),
            details=dict(entry.data),
            hours_ago=(now - entry.at).total_seconds() / 3600,
        )
    today = now.astimezone(policy.zone).date()
    return Dashboard(
        at=now,
        size=size_series(boundaries, present, deleted, policy),
        undated=present.get(-1, browse_queries.Bucket(0, 0)),
        purge_runs=runs,
        open_cases=open_cases,
        holds=list_holds(store),
        pending_plans=pending,
        requests_open=requests_open,
        requests=[
            RequestDue(
                r.ref,
                r.kind,
                r.requested_at,
                r.due_at,
                (r.due_at.astimezone(policy.zone).date() - today).days,
            )
            for r in requests
        ],
        last_run=last_run,
    )


def month_starts(now: datetime, policy: Policy, months: int) -> list[datetime]:
    """The starts of the last ``months`` months in the policy zone, oldest first, then ``now``."""
    local = now.astimezone(policy.zone)
    year, month = local.year, local.month
    starts: list[datetime] = []
    for _ in range(months):
        starts.append(local.replace(year=year, month=month, day=1, hour=0, minute=0, second=0))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    boundaries = [
        start.replace(microsecond=0, fold=0).astimezone(now.tzinfo) for start in reversed(starts)
    ]
    if boundaries[-1] < now:
        boundaries.append(now)
    return boundaries


def size_series(
    boundaries: list[datetime],
    present: dict[int, browse_queries.Bucket],
    deleted: dict[tuple[int, int], browse_queries.Bucket],
    policy: Policy,
) -> list[SizePoint]:
    """Mailbox size at each boundary ``k``: indexed mail received before it (intervals
    ``0..k``) plus mail received before it and deleted for good at or after it. The last
    boundary is now, and counts every indexed message."""
    points: list[SizePoint] = []
    messages = size = 0
    last = len(boundaries) - 1
    for index, boundary in enumerate(boundaries):
        # The last point is now: it also counts mail dated at or after it (clock skew).
        for key in (index, len(boundaries)) if index == last else (index,):
            bucket = present.get(key)
            if bucket is not None:
                messages += bucket.messages
                size += bucket.bytes
        gone = [b for (received, removed), b in deleted.items() if 0 <= received <= index < removed]
        local = boundary.astimezone(policy.zone)
        points.append(
            SizePoint(
                label="now" if index == last else f"{local:%Y-%m}",
                at=boundary,
                messages=messages + sum(b.messages for b in gone),
                bytes=size + sum(b.bytes for b in gone),
            )
        )
    return points


__all__ = [
    "MONTHS",
    "Dashboard",
    "LastRun",
    "PurgeRun",
    "RequestDue",
    "SizePoint",
    "dashboard",
    "month_starts",
    "size_series",
]
