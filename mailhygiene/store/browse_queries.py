"""Read-only SQL for the web page: one page of rows at a time, aggregates in one pass.

Every list here is bounded (``LIMIT``) and pages by key (``id`` below/above a cursor),
so a page costs the same on the first and the thousandth screen of a 100k-message
index. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, intersect, select
from sqlalchemy.orm import Session

from mailhygiene.store.models import (
    Account,
    Case,
    Folder,
    Message,
    Plan,
    PlanItem,
    QuarantineEntry,
    SubjectRequest,
    Tombstone,
)
from mailhygiene.store.purge_queries import plan_entries


@dataclass(frozen=True, slots=True)
class MessageLocation:
    """Where an indexed message is on the server, and what identifies it there."""

    row_id: int
    account: str
    folder: str
    uidvalidity: int | None
    uid: int
    message_id: str
    size: int


@dataclass(frozen=True, slots=True)
class PlanItemRow:
    id: int
    folder: str
    uid: int
    message_id: str
    size: int
    internal_date: datetime | None
    reason_kind: str
    reason_name: str
    reason_detail: str
    state: str
    outcome: str


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    plan_ref: str
    original_folder: str
    message_id: str
    size: int
    moved_at: datetime
    purge_after: datetime
    state: str


@dataclass(frozen=True, slots=True)
class RequestRow:
    """A data-subject request as the dashboard lists it: no address, only its deadline."""

    ref: str
    kind: str
    requested_at: datetime
    due_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """Messages and bytes in one interval of a series."""

    messages: int
    bytes: int


# -- messages ----------------------------------------------------------------------------


def message_location(session: Session, row_id: int) -> MessageLocation | None:
    row = session.execute(
        select(
            Message.id,
            Account.name,
            Folder.name,
            Folder.uidvalidity,
            Message.uid,
            Message.message_id,
            Message.size,
        )
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(Message.id == row_id)
    ).first()
    return MessageLocation(*row) if row is not None else None


def thread_accounts(session: Session, thread_ids: Sequence[str]) -> list[str]:
    """The accounts holding mail of these threads."""
    if not thread_ids:
        return []
    return list(
        session.scalars(
            select(Account.name)
            .distinct()
            .join(Folder, Folder.account_id == Account.id)
            .join(Message, Message.folder_id == Folder.id)
            .where(Message.thread_id.in_(list(thread_ids)))
            .order_by(Account.name)
        )
    )


def open_case_refs(session: Session, *, limit: int) -> list[str]:
    """The newest open cases' references (to suggest in a form)."""
    return list(
        session.scalars(
            select(Case.ref)
            .where(Case.status == "open")
            .order_by(Case.opened_at.desc(), Case.id.desc())
            .limit(limit)
        )
    )


def count_open_cases(session: Session) -> int:
    return int(
        session.scalar(select(func.count()).select_from(Case).where(Case.status == "open")) or 0
    )


# -- plans -----------------------------------------------------------------------------------


def plan_page(
    session: Session,
    *,
    before_id: int | None,
    limit: int,
    statuses: Sequence[str] = (),
) -> list[tuple[int, Plan]]:
    """Plans newest first, below ``before_id``; each with its id (the next page's cursor)."""
    query = select(Plan).order_by(Plan.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Plan.id < before_id)
    if statuses:
        query = query.where(Plan.status.in_(list(statuses)))
    return [(plan.id, plan) for plan in session.scalars(query)]


def previous_plan(session: Session, plan: Plan) -> Plan | None:
    """The plan made before ``plan`` for the same account and of the same kind."""
    return session.scalar(
        select(Plan)
        .where(Plan.account == plan.account, Plan.kind == plan.kind, Plan.id < plan.id)
        .order_by(Plan.id.desc())
        .limit(1)
    )


def common_items(session: Session, plan_id: int, other_id: int) -> int:
    """How many of ``plan_id``'s items name the same server message as one of ``other_id``'s.

    An ``INTERSECT`` of the two identity lists: sorted or hashed once each, where a join
    would look up every item of one plan among all items of the other.
    """

    def identities(one: int) -> Any:
        items = plan_entries(one, columns=("folder", "uidvalidity", "uid"))
        return select(items.c.folder, items.c.uidvalidity, items.c.uid)

    both = intersect(identities(plan_id), identities(other_id)).subquery()
    return int(session.scalar(select(func.count()).select_from(both)) or 0)


def reason_items(
    session: Session,
    plan_id: int,
    *,
    reason_kind: str,
    reason_name: str,
    after_id: int | None,
    limit: int,
) -> list[PlanItemRow]:
    """Items of one reason in plan order, after ``after_id``."""
    items = plan_entries(plan_id)
    query = (
        select(items)
        .where(items.c.reason_kind == reason_kind, items.c.reason_name == reason_name)
        .order_by(items.c.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(items.c.id > after_id)
    return [_item_row(item) for item in session.execute(query)]


def done_per_plan(session: Session, plan_ids: Sequence[int]) -> dict[int, Bucket]:
    """Messages and bytes each plan has moved or deleted so far."""
    if not plan_ids:
        return {}
    rows = session.execute(
        select(PlanItem.plan_id, func.count(), func.coalesce(func.sum(PlanItem.size), 0))
        .where(PlanItem.plan_id.in_(list(plan_ids)), PlanItem.state == "done")
        .group_by(PlanItem.plan_id)
    )
    return {plan_id: Bucket(int(count), int(size)) for plan_id, count, size in rows}


def item_states(session: Session, plan_id: int) -> dict[str, int]:
    items = plan_entries(plan_id, columns=("state",))
    rows = session.execute(select(items.c.state, func.count()).group_by(items.c.state))
    return {state: int(count) for state, count in rows}


def finished_plans(session: Session, *, limit: int) -> list[tuple[int, Plan]]:
    """The most recently finished plans (executed to the end)."""
    query = (
        select(Plan)
        .where(Plan.status == "done", Plan.finished_at.is_not(None))
        .order_by(Plan.finished_at.desc(), Plan.id.desc())
        .limit(limit)
    )
    return [(plan.id, plan) for plan in session.scalars(query)]


def _item_row(item: Any) -> PlanItemRow:
    """A row of ``plan_entries``."""
    return PlanItemRow(
        item.id,
        item.folder,
        item.uid,
        item.message_id,
        item.size,
        item.internal_date,
        item.reason_kind,
        item.reason_name,
        item.reason_detail,
        item.state,
        item.outcome,
    )


# -- quarantine ------------------------------------------------------------------------------


def quarantine_page(
    session: Session,
    *,
    account: str,
    after_id: int | None,
    limit: int,
    plan_ref: str | None = None,
) -> list[QuarantineRow]:
    """Entries still in quarantine (``held``), oldest first, after ``after_id``."""
    query = (
        select(QuarantineEntry)
        .where(QuarantineEntry.account == account, QuarantineEntry.state == "held")
        .order_by(QuarantineEntry.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(QuarantineEntry.id > after_id)
    if plan_ref:
        query = query.where(QuarantineEntry.plan_ref == plan_ref)
    return [
        QuarantineRow(
            e.id,
            e.plan_ref,
            e.original_folder,
            e.message_id,
            e.size,
            e.moved_at,
            e.purge_after,
            e.state,
        )
        for e in session.scalars(query)
    ]


def quarantine_totals(session: Session, *, account: str, plan_ref: str | None = None) -> Bucket:
    query = select(func.count(), func.coalesce(func.sum(QuarantineEntry.size), 0)).where(
        QuarantineEntry.account == account, QuarantineEntry.state == "held"
    )
    if plan_ref:
        query = query.where(QuarantineEntry.plan_ref == plan_ref)
    count, size = session.execute(query).one()
    return Bucket(int(count), int(size))


# -- dashboard -------------------------------------------------------------------------------


def _bucket_of(column: Any, boundaries: Sequence[datetime]) -> Any:
    """``k`` for the first boundary the value is below, ``len(boundaries)`` when none,
    ``-1`` when the value is NULL: one CASE, so one pass over the table on both back ends."""
    whens = [(column.is_(None), -1)]
    whens += [(column < boundary, index) for index, boundary in enumerate(boundaries)]
    return case(*whens, else_=len(boundaries))


def messages_by_interval(session: Session, boundaries: Sequence[datetime]) -> dict[int, Bucket]:
    """Indexed messages (every account and folder) by the interval of their INTERNALDATE:
    key ``k`` holds those received before ``boundaries[k]`` and not before the one
    preceding it; ``-1`` those without a date."""
    bucket = _bucket_of(Message.internal_date, boundaries).label("bucket")
    rows = session.execute(
        select(bucket, func.count(), func.coalesce(func.sum(Message.size), 0)).group_by(bucket)
    )
    return {int(key): Bucket(int(count), int(size)) for key, count, size in rows}


def deletions_by_interval(
    session: Session, boundaries: Sequence[datetime]
) -> dict[tuple[int, int], Bucket]:
    """Mail deleted for good (tombstones) by (interval received, interval deleted)."""
    received = _bucket_of(Tombstone.internal_date, boundaries).label("received")
    deleted = _bucket_of(Tombstone.disposed_at, boundaries).label("deleted")
    rows = session.execute(
        select(
            received, deleted, func.count(), func.coalesce(func.sum(Tombstone.size), 0)
        ).group_by(received, deleted)
    )
    return {(int(r), int(d)): Bucket(int(count), int(size)) for r, d, count, size in rows}


def open_requests(session: Session, *, limit: int) -> tuple[int, list[RequestRow]]:
    """Open data-subject requests, soonest due first, and how many there are."""
    total = session.scalar(
        select(func.count()).select_from(SubjectRequest).where(SubjectRequest.status == "open")
    )
    rows = session.execute(
        select(
            SubjectRequest.ref,
            SubjectRequest.kind,
            SubjectRequest.requested_at,
            SubjectRequest.due_at,
            SubjectRequest.status,
        )
        .where(SubjectRequest.status == "open")
        .order_by(SubjectRequest.due_at, SubjectRequest.id)
        .limit(limit)
    )
    return int(total or 0), [RequestRow(*row) for row in rows]


__all__ = [
    "Bucket",
    "MessageLocation",
    "PlanItemRow",
    "QuarantineRow",
    "RequestRow",
    "common_items",
    "count_open_cases",
    "deletions_by_interval",
    "done_per_plan",
    "finished_plans",
    "item_states",
    "message_location",
    "messages_by_interval",
    "open_case_refs",
    "open_requests",
    "plan_page",
    "previous_plan",
    "quarantine_page",
    "quarantine_totals",
    "reason_items",
    "thread_accounts",
]
