"""Approve or reject a plan; decide whether a plan's approvals authorise execution.

An approval is bound to the plan's content hash at the moment it is given. Before
anything runs, the hash is recomputed from the stored items, so a plan edited in the
database after approval is refused. A bulk plan (over the scheduled run's
auto-approval limit) needs an approver other than its creator: four eyes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import SafetyRefusal
from mailhygiene.policy import Policy
from mailhygiene.purge.model import PlanKind, PlanStatus
from mailhygiene.store import purge_queries
from mailhygiene.store.models import Approval, Plan
from mailhygiene.store.session import Session, Store

AUTO_APPROVER_SUFFIX = " (auto: within the scheduled limit)"


@dataclass(frozen=True)
class ApprovalState:
    ref: str
    status: str
    approvers: tuple[str, ...]


def is_bulk(plan: Plan, policy: Policy) -> bool:
    """Bulk plans are over the auto-approval limit, and every erasure is treated as bulk."""
    return plan.kind == PlanKind.ERASURE.value or plan.item_count > policy.auto_approve_limit


def approve_plan(
    store: Store, ref: str, policy: Policy, *, actor: str, now: datetime, comment: str = ""
) -> ApprovalState:
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref, for_update=True)
        _check_approvable(session, plan, now)
        existing = purge_queries.approvals(session, plan.id)
        if any(a.approved_by == actor and a.decision == "approve" for a in existing):
            # why: one person approving twice must not count as two pairs of eyes
            raise SafetyRefusal(f"{actor} has already approved plan {ref}")
        if is_bulk(plan, policy) and actor == plan.created_by:
            # why: four eyes — the person who made a bulk plan cannot also authorise it
            raise SafetyRefusal(
                f"plan {ref} is a bulk cleanup ({plan.item_count} messages, limit "
                f"{policy.auto_approve_limit}) created by {actor}; another manager must approve it"
            )
        _record_decision(
            session,
            plan,
            by=actor,
            decision="approve",
            comment=comment,
            status=PlanStatus.APPROVED,
            tag=AuditTag.PLAN_APPROVE,
            actor=actor,
            now=now,
            data={
                "content_hash": plan.content_hash,
                "messages": plan.item_count,
                "comment": comment,
            },
        )
        earlier = [a.approved_by for a in existing if a.decision == "approve"]
        return ApprovalState(ref, plan.status, (*earlier, actor))


def auto_approve(store: Store, ref: str, policy: Policy, *, actor: str, now: datetime) -> None:
    """The scheduled run approves its own plan only when it is within the configured limit."""
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref, for_update=True)
        _check_approvable(session, plan, now)
        if is_bulk(plan, policy):
            # why: large volumes are a bulk cleanup that a manager must look at first
            raise SafetyRefusal(
                f"plan {ref} has {plan.item_count} messages, over the auto-approval limit "
                f"{policy.auto_approve_limit}; it waits for a manager's approval"
            )
        _record_decision(
            session,
            plan,
            by=actor + AUTO_APPROVER_SUFFIX,
            decision="approve",
            comment="",
            status=PlanStatus.APPROVED,
            tag=AuditTag.PLAN_APPROVE,
            actor=actor,
            now=now,
            data={"content_hash": plan.content_hash, "messages": plan.item_count, "auto": True},
        )


def reject_plan(store: Store, ref: str, *, actor: str, now: datetime, comment: str) -> None:
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref, for_update=True)
        if plan.status not in (PlanStatus.PENDING.value, PlanStatus.APPROVED.value):
            raise SafetyRefusal(
                f"plan {ref} is {plan.status}; only a pending or approved plan can be rejected"
            )
        _record_decision(
            session,
            plan,
            by=actor,
            decision="reject",
            comment=comment,
            status=PlanStatus.REJECTED,
            tag=AuditTag.PLAN_REJECT,
            actor=actor,
            now=now,
            data={"comment": comment},
        )


def _check_approvable(session: Session, plan: Plan, now: datetime) -> None:
    if plan.status not in (PlanStatus.PENDING.value, PlanStatus.APPROVED.value):
        raise SafetyRefusal(f"plan {plan.ref} is {plan.status}; it cannot be approved")
    if now >= plan.expires_at:
        # why: the world moves on — a stale plan must be recomputed, not approved
        raise SafetyRefusal(
            f"plan {plan.ref} expired at {plan.expires_at:%Y-%m-%d %H:%M} UTC; make a new plan"
        )
    verify_plan_integrity(session, plan)


def verify_plan_integrity(session: Session, plan: Plan) -> None:
    """Recompute the content hash from the stored items; refuse if they were altered."""
    actual, count = purge_queries.stored_content_hash(session, plan)
    if actual != plan.content_hash or count != plan.item_count:
        # why: the items are not what was planned and shown; executing them is not authorised
        raise SafetyRefusal(
            f"plan {plan.ref} was altered after it was made (content hash mismatch); "
            "it will not be approved or executed — make a new plan"
        )


def check_authorised(session: Session, plan: Plan, policy: Policy, now: datetime) -> None:
    """Refuse unless ``plan`` is approved, unexpired, unaltered and approved by the right people."""
    if plan.status == PlanStatus.DONE.value:
        raise SafetyRefusal(
            f"plan {plan.ref} was already executed; nothing is left to do "
            f"('mailhygiene purge show {plan.ref}' shows what it did)"
        )
    if plan.status == PlanStatus.REJECTED.value:
        raise SafetyRefusal(f"plan {plan.ref} was rejected; make a new plan")
    if plan.status not in (PlanStatus.APPROVED.value, PlanStatus.EXECUTING.value):
        # why: only an approved plan may touch the server
        raise SafetyRefusal(
            f"plan {plan.ref} is {plan.status}, not approved; a manager must run "
            f"'mailhygiene purge approve {plan.ref}' first"
        )
    if now >= plan.expires_at and plan.status != PlanStatus.EXECUTING.value:
        raise SafetyRefusal(
            f"plan {plan.ref} expired at {plan.expires_at:%Y-%m-%d %H:%M} UTC; make a new plan"
        )
    verify_plan_integrity(session, plan)
    valid = [
        a
        for a in purge_queries.approvals(session, plan.id)
        if a.decision == "approve" and a.content_hash == plan.content_hash
    ]
    if not valid:
        raise SafetyRefusal(f"plan {plan.ref} has no approval bound to its current content")
    if is_bulk(plan, policy) and all(a.approved_by == plan.created_by for a in valid):
        raise SafetyRefusal(f"bulk plan {plan.ref} was approved only by its creator")


def _record_decision(
    session: Session,
    plan: Plan,
    *,
    by: str,
    decision: str,
    comment: str,
    status: PlanStatus,
    tag: AuditTag,
    actor: str,
    now: datetime,
    data: dict[str, object],
) -> None:
    """Store an approval or rejection bound to the plan's hash, set its status, audit it."""
    purge_queries.add_approval(
        session,
        Approval(
            plan_id=plan.id,
            content_hash=plan.content_hash,
            approved_by=by,
            approved_at=now,
            expires_at=plan.expires_at,
            decision=decision,
            comment=comment,
        ),
    )
    plan.status = status.value
    audit.append(session, actor=actor, tag=tag, subject=plan.ref, data=data, at=now)
