"""Compute a purge plan: index facts + ``policy.decide`` → an immutable, hashed plan.

No server is contacted and nothing is changed on it: a plan is only a proposal. Mail
in the quarantine folder is never planned again here (``quarantine expunge`` owns it).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.governance import admit_for_planning
from mailhygiene.holds import held_rows, hold_lookup
from mailhygiene.policy import Action, Policy, PurgeAction, decide
from mailhygiene.processes import Parallelism
from mailhygiene.purge.model import (
    ItemAction,
    ItemsDigest,
    PlanKind,
    PlannedMessage,
    PlanStatus,
    content_hash,
    digest_of,
    plan_ref,
)
from mailhygiene.retention import refresh_verdicts, verdict_key
from mailhygiene.store import facts_queries, purge_queries, retention_queries
from mailhygiene.store.models import Plan
from mailhygiene.store.session import Session, Store


@dataclass
class PlanSummary:
    """What a person needs to judge a plan: totals by folder and rule, and what is kept."""

    ref: str | None
    kind: str
    account: str
    status: str
    created_at: datetime
    created_by: str
    planned_for: datetime
    expires_at: datetime | None
    item_count: int
    total_bytes: int
    content_hash: str
    policy_hash: str
    by_folder: dict[str, dict[str, int]] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    undated: int = 0
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "by_folder": self.by_folder,
                "by_reason": self.by_reason,
                "kept": self.kept,
                "undated": self.undated,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class PlanComputation:
    """The outcome of evaluating the policy, before anything is stored."""

    items: list[PlannedMessage]
    summary: PlanSummary


def planned_message(
    row: facts_queries.IndexedRow,
    action: ItemAction,
    *,
    reason_kind: str,
    reason_name: str,
    reason_detail: str,
) -> PlannedMessage:
    """A plan item for an indexed message: its server identity and why it is planned."""
    return PlannedMessage(
        message_row=row.message_row,
        folder=row.folder,
        uidvalidity=row.uidvalidity,
        uid=row.uid,
        message_id=row.message_id,
        size=row.facts.size,
        internal_date=row.facts.internal_date,
        action=action,
        reason_kind=reason_kind,
        reason_name=reason_name,
        reason_detail=reason_detail,
    )


class _Tally:
    """The plan's items and the summary's totals, filled one message at a time."""

    def __init__(self, action: ItemAction) -> None:
        self.action = action
        self.items: list[PlannedMessage] = []
        self.by_folder: dict[str, list[int]] = {}  # name → [messages, bytes]
        self.by_reason: dict[str, list[int]] = {}  # kind:name → [messages, bytes]
        self.kept: Counter[str] = Counter()
        self.undated = 0

    def keep(self, kind: str, count: int = 1) -> None:
        self.kept[kind] += count
        if kind == "no_date":
            self.undated += count

    def plan(self, item: PlannedMessage) -> None:
        self.items.append(item)
        self.add_totals(item.folder, f"{item.reason_kind}:{item.reason_name}", 1, item.size)

    def plan_all(self, items: Iterable[PlannedMessage]) -> None:
        """``plan`` for many items (the per-item call and key text would cost more than
        the rest of planning them)."""
        groups: dict[tuple[str, str, str], list[int]] = {}
        append = self.items.append
        for item in items:
            append(item)
            group = (item.folder, item.reason_kind, item.reason_name)
            totals = groups.get(group)
            if totals is None:
                groups[group] = [1, item.size]
            else:
                totals[0] += 1
                totals[1] += item.size
        for (folder, kind, name), (messages, size) in groups.items():
            self.add_totals(folder, f"{kind}:{name}", messages, size)

    def add_totals(self, folder: str, reason: str, messages: int, size: int) -> None:
        for counts, name in ((self.by_folder, folder), (self.by_reason, reason)):
            totals = counts.get(name)
            if totals is None:
                totals = counts[name] = [0, 0]
            totals[0] += messages
            totals[1] += size

    def drop_empty_totals(self) -> None:
        for counts in (self.by_folder, self.by_reason):
            for name in [name for name, (messages, _size) in counts.items() if messages == 0]:
                del counts[name]
        self.kept = +self.kept

    @staticmethod
    def totals(counts: dict[str, list[int]]) -> dict[str, dict[str, int]]:
        return {
            name: {"messages": messages, "bytes": size}
            for name, (messages, size) in sorted(counts.items())
        }

    def summary(
        self,
        digest: ItemsDigest,
        policy: Policy,
        *,
        kind: PlanKind,
        account: str,
        now: datetime,
        actor: str,
        note: str = "",
    ) -> PlanSummary:
        """The summary of a plan of ``digest``'s items, with what this tally kept."""
        return PlanSummary(
            ref=None,
            kind=kind.value,
            account=account,
            status=PlanStatus.PENDING.value,
            created_at=now,
            created_by=actor,
            planned_for=now,
            expires_at=None,
            item_count=digest.count,
            total_bytes=digest.bytes,
            content_hash=digest.content_hash,
            policy_hash=policy.source_hash,
            by_folder=self.totals(digest.by_folder),
            by_reason=self.totals(digest.by_reason),
            kept=dict(sorted(self.kept.items())),
            undated=self.undated,
            note=note,
        )

    def judge(self, row: facts_queries.IndexedRow, policy: Policy, now: datetime) -> None:
        verdict = decide(row.facts, policy, now)
        deciding = verdict.reasons[0]
        if verdict.action is not Action.PURGE:
            self.keep(deciding.kind.value)
            return
        self.plan(
            planned_message(
                row,
                self.action,
                reason_kind=deciding.kind.value,
                reason_name=deciding.name,
                reason_detail=deciding.detail,
            )
        )


def compute_plan(
    store: Store,
    policy: Policy,
    *,
    account: str,
    now: datetime,
    actor: str,
    kind: PlanKind = PlanKind.PURGE,
    message_rows: Sequence[int] | None = None,
) -> PlanComputation:
    """Evaluate every indexed message of ``account`` (or just ``message_rows``) at ``now``.

    For the whole account, messages no hold or case touches are planned from their
    stored retention verdicts (``mailhygiene.retention``, refreshed first) and only the
    others are judged by ``decide``; ``message_rows`` are all judged by ``decide``. Both
    give the same plan (``tests/integration/test_plan_verdicts.py``).
    """
    action = ItemAction.MOVE if policy.purge_action is PurgeAction.MOVE else ItemAction.DELETE
    tally = _Tally(action)
    excluded = (policy.quarantine_folder,)
    with store.transaction() as session:
        if message_rows is not None:
            holds_for = hold_lookup(session, account=account, zone=policy.zone)
            for row in facts_queries.iter_indexed(
                session,
                account=account,
                holds_for=holds_for,
                exclude_folders=excluded,
                message_rows=message_rows,
            ):
                tally.judge(row, policy, now)
        else:
            _plan_from_verdicts(store, session, policy, tally, account=account, now=now)
    tally.items.sort(key=itemgetter(0))  # by message_row
    items = tally.items
    digest = ItemsDigest(
        content_hash=content_hash(
            kind=kind, account=account, policy_hash=policy.source_hash, items=items
        ),
        count=len(items),
        bytes=sum(item.size for item in items),
        by_folder=tally.by_folder,
        by_reason=tally.by_reason,
    )
    summary = tally.summary(digest, policy, kind=kind, account=account, now=now, actor=actor)
    return PlanComputation(items=items, summary=summary)


def _plan_from_verdicts(
    store: Store, session: Session, policy: Policy, tally: _Tally, *, account: str, now: datetime
) -> None:
    _refresh(store, session, policy, account=account)
    scope = _touched_scope(session, policy, account=account)
    _judge_touched(session, policy, tally, scope, now=now)
    tally.plan_all(
        retention_queries.purgeable(
            session, scope.folders, scope.key, now=now, action=tally.action, excluding=scope.judged
        )
    )
    tally.drop_empty_totals()


def _refresh(
    store: Store,
    session: Session,
    policy: Policy,
    *,
    account: str,
    parallel: Parallelism | None = None,
) -> None:
    refresh_verdicts(
        session,
        policy,
        account=account,
        exclude_folders=(policy.quarantine_folder,),
        store=store,
        parallel=parallel,
    )


@dataclass(frozen=True)
class _TouchedScope:
    """The account's folders (but quarantine), the current verdict key, and the messages
    a hold or a case may touch (``judged``): those are judged by ``decide``, the others
    are planned from their stored verdicts."""

    account: str
    folders: dict[int, tuple[str, int]]
    key: retention_queries.VerdictKey
    held: dict[int, tuple[str, ...]]
    judged: set[int]


def _touched_scope(session: Session, policy: Policy, *, account: str) -> _TouchedScope:
    folders = retention_queries.account_folders(
        session, account, exclude_folders=(policy.quarantine_folder,)
    )
    held = held_rows(session, account=account, zone=policy.zone)
    judged = set(held) | retention_queries.case_touched_rows(
        session, folders, case_keyword=policy.case_keyword
    )
    return _TouchedScope(account, folders, verdict_key(policy), held, judged)


def _judge_touched(
    session: Session, policy: Policy, tally: _Tally, scope: _TouchedScope, *, now: datetime
) -> None:
    """Judge the messages a hold or a case may touch with ``decide`` (into ``tally``), and
    count what the verdicts of the others keep."""
    if scope.judged:
        for row in facts_queries.iter_indexed(
            session,
            account=scope.account,
            holds_for=lambda row_id: scope.held.get(row_id, ()),
            exclude_folders=(policy.quarantine_folder,),
            message_rows=sorted(scope.judged),
        ):
            tally.judge(row, policy, now)
    for verdict_kind, count in retention_queries.kept_by_kind(
        session, scope.folders, scope.key, now=now
    ).items():
        tally.keep(verdict_kind, count)
    # ``kept_by_kind`` counted the judged messages by their verdicts; ``tally.judge``
    # counted them by what decide made of them: take the verdicts' share out again.
    for folder_id, verdict_kind, keep_until in retention_queries.verdicts_of(
        session, scope.judged, scope.key
    ):
        if folder_id in scope.folders and (keep_until is None or keep_until > now):
            tally.keep(verdict_kind, -1)


def plan_purge(
    store: Store,
    policy: Policy,
    *,
    account: str,
    now: datetime,
    actor: str,
    kind: PlanKind = PlanKind.PURGE,
    message_rows: Sequence[int] | None = None,
    note: str = "",
    parallel: Parallelism | None = None,
) -> PlanSummary:
    """Compute and store a plan (when it has anything to do) and audit its creation.

    The same plan as ``compute_plan`` then ``store_plan``; for the whole account, the
    items planned by their stored verdicts go from the index to the plan in one
    statement, and the content hash and totals are computed from the stored rows.
    Refused (``SafetyRefusal``) when an extend-only locked policy version is in force
    and ``policy`` is not that version (``governance.admit_for_planning``). ``parallel``
    says when stale retention verdicts are judged in worker processes
    (``retention.refresh_verdicts``).
    """
    admit_for_planning(store, policy, actor=actor, now=now)
    if message_rows is None:
        return _plan_in_store(
            store,
            policy,
            account=account,
            now=now,
            actor=actor,
            kind=kind,
            note=note,
            parallel=parallel,
        )
    computed = compute_plan(
        store, policy, account=account, now=now, actor=actor, kind=kind, message_rows=message_rows
    )
    return store_plan(
        store,
        policy,
        kind=kind,
        account=account,
        items=computed.items,
        now=now,
        actor=actor,
        note=note,
        summary=computed.summary,
    )


def _plan_in_store(
    store: Store,
    policy: Policy,
    *,
    account: str,
    now: datetime,
    actor: str,
    kind: PlanKind,
    note: str,
    parallel: Parallelism | None,
) -> PlanSummary:
    action = ItemAction.MOVE if policy.purge_action is PurgeAction.MOVE else ItemAction.DELETE
    tally = _Tally(action)
    # why: committed on its own, so that the judging below, on another connection, reads
    # the refreshed verdicts (they are a cache of decide: keeping them is always right)
    with store.transaction() as session:
        _refresh(store, session, policy, account=account, parallel=parallel)
    with store.transaction() as session:
        scope = _touched_scope(session, policy, account=account)
        plan = _new_plan(policy, kind=kind, account=account, now=now, actor=actor, note=note)
        purge_queries.insert_plan(session, plan, ())
        _store_due_while_judging(
            store,
            session,
            lambda: retention_queries.store_purgeable(
                session,
                plan.id,
                scope.folders,
                scope.key,
                now=now,
                action=action,
                excluding=scope.judged,
            ),
            lambda judging: _judge_touched(judging, policy, tally, scope, now=now),
        )
        purge_queries.insert_members(session, plan.id, tally.items)
        purge_queries.index_new_members(session)
        # why: hashed exactly as approving and executing will verify it, from what is stored
        stored_hash, _count = purge_queries.stored_content_hash(session, plan)
        digest = digest_of(stored_hash, purge_queries.item_groups(session, plan.id))
        tally.drop_empty_totals()
        summary = tally.summary(
            digest, policy, kind=kind, account=account, now=now, actor=actor, note=note
        )
        if not digest.count:
            session.delete(plan)  # nothing to do: no plan is stored
            return summary
        _record_plan(session, plan, summary, actor=actor, now=now)
    return summary


def _store_due_while_judging(
    store: Store,
    session: Session,
    store_due: Callable[[], None],
    judge: Callable[[Session], None],
) -> None:
    """Run ``store_due`` (on ``session``) and ``judge`` (given a session to read with).

    When a second connection reaches the same data (``Store.shareable``), the database
    stores the due items on a thread while ``judge`` reads over that connection: the two
    took turns before, and storing is about half of a plan (at 100k on PostgreSQL, 0.6 s
    of 1.2 s; judging what a hold or case touches is another 0.13 s). The judging reads
    only committed data, which is why the verdicts are refreshed in a transaction of their
    own first.
    """
    if not store.shareable:
        store_due()
        judge(session)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-store") as storing:
        stored = storing.submit(store_due)
        with store.transaction() as reading:
            judge(reading)
        stored.result()


def _new_plan(
    policy: Policy, *, kind: PlanKind, account: str, now: datetime, actor: str, note: str
) -> Plan:
    """A pending plan row; its hash, counts and summary are filled in by ``_record_plan``."""
    return Plan(
        ref=plan_ref(now, secrets.token_hex(3)),
        kind=kind.value,
        account=account,
        status=PlanStatus.PENDING.value,
        created_at=now,
        created_by=actor,
        planned_for=now,
        expires_at=policy.plan_ttl.add_to(now),
        policy_hash=policy.source_hash,
        content_hash="",
        item_count=0,
        total_bytes=0,
        summary="{}",
        note=note,
    )


def _record_plan(
    session: Session, plan: Plan, summary: PlanSummary, *, actor: str, now: datetime
) -> None:
    """Give the stored ``plan`` its ``summary`` and audit its creation; ``summary`` gets the
    plan's reference and expiry."""
    plan.content_hash = summary.content_hash
    plan.item_count = summary.item_count
    plan.total_bytes = summary.total_bytes
    plan.summary = summary.to_json()
    audit.append(
        session,
        actor=actor,
        tag=AuditTag.PLAN_CREATE,
        subject=plan.ref,
        data={
            "account": plan.account,
            "kind": plan.kind,
            "messages": summary.item_count,
            "bytes": summary.total_bytes,
            "content_hash": summary.content_hash,
            "policy_hash": plan.policy_hash,
            "by_reason": {k: v["messages"] for k, v in summary.by_reason.items()},
        },
        at=now,
    )
    summary.ref = plan.ref
    summary.expires_at = plan.expires_at


def store_plan(
    store: Store,
    policy: Policy,
    *,
    kind: PlanKind,
    account: str,
    items: Sequence[PlannedMessage],
    now: datetime,
    actor: str,
    note: str,
    summary: PlanSummary,
) -> PlanSummary:
    """Store ``items`` as a pending plan and audit its creation: the one path plans are saved by.

    The content hash, count and size are recomputed here from ``items`` (so what an
    approval binds to is always what is stored); the rest of ``summary`` (totals by
    folder and reason, what is kept) is the caller's. Nothing is stored when ``items``
    is empty: the summary comes back without a ``ref``.
    """
    summary.kind = kind.value
    summary.account = account
    summary.note = note
    summary.item_count = len(items)
    summary.total_bytes = sum(item.size for item in items)
    summary.policy_hash = policy.source_hash
    summary.content_hash = content_hash(
        kind=kind, account=account, policy_hash=policy.source_hash, items=items
    )
    if not items:
        return summary
    with store.transaction() as session:
        plan = _new_plan(policy, kind=kind, account=account, now=now, actor=actor, note=note)
        purge_queries.insert_plan(session, plan, items)
        purge_queries.index_new_members(session)
        _record_plan(session, plan, summary, actor=actor, now=now)
    return summary


def stored_summary(store: Store, ref: str) -> PlanSummary:
    """A stored plan's summary, as it was computed."""
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref)
        return summary_of(plan)


def summary_of(plan: Plan) -> PlanSummary:
    data: dict[str, Any] = json.loads(plan.summary or "{}")
    return PlanSummary(
        ref=plan.ref,
        kind=plan.kind,
        account=plan.account,
        status=plan.status,
        created_at=plan.created_at,
        created_by=plan.created_by,
        planned_for=plan.planned_for,
        expires_at=plan.expires_at,
        item_count=plan.item_count,
        total_bytes=plan.total_bytes,
        content_hash=plan.content_hash,
        policy_hash=plan.policy_hash,
        by_folder=data.get("by_folder", {}),
        by_reason=data.get("by_reason", {}),
        kept=data.get("kept", {}),
        undated=data.get("undated", 0),
        note=plan.note,
    )
