"""Look before changing: what a new rules file, or releasing a hold, would purge.

``simulate_policy`` runs ``purge.plan.compute_plan`` — the very code a real plan runs —
once with the current policy and once with the candidate, on the same index at the
same instant, and compares the two sets of messages. Nothing is stored and nothing
is changed: a simulation is not a plan. Its ``candidate`` summary (totals by folder and
reason, content hash) is what a real plan under the candidate at that instant would
show, so "the simulation matched the plan" can be checked.

``preview_hold_release`` decides every message a hold covers with and without that
hold: what would become purgeable at the next plan, what only later (and when), and
what stays kept for another reason. Releasing a hold never deletes anything by
itself; a later plan, with its approval, does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailhygiene.errors import NotFoundError
from mailhygiene.governance import lock_objections
from mailhygiene.holds import hold_lookup, list_holds
from mailhygiene.policy import Action, Policy, decide
from mailhygiene.policy.compare import PolicyChange, compare_policies
from mailhygiene.purge.model import PlannedMessage
from mailhygiene.purge.plan import PlanSummary, compute_plan
from mailhygiene.store import facts_queries
from mailhygiene.store.session import Store

__all__ = [
    "HoldReleasePreview",
    "MessageSample",
    "ReleaseGroup",
    "Shift",
    "Simulation",
    "preview_hold_release",
    "simulate_policy",
]


@dataclass(frozen=True)
class MessageSample:
    folder: str
    uid: int
    message_id: str
    received: datetime | None
    reason: str
    detail: str


@dataclass
class Shift:
    """Messages of one folder whose fate differs between the policies, for one reason."""

    folder: str
    reason: str  # "kind:name" of the policy that purges them
    messages: int = 0
    bytes: int = 0
    samples: list[MessageSample] = field(default_factory=list)


@dataclass
class Simulation:
    account: str
    now: datetime
    current_hash: str
    candidate_hash: str
    current: PlanSummary  # what a plan under each policy would hold, as ``purge plan`` shows it
    candidate: PlanSummary  # its content_hash is the hash the real plan will carry
    newly_purged: list[Shift]  # the candidate purges, the current policy keeps
    no_longer_purged: list[Shift]  # the current policy purges, the candidate keeps
    reason_changed: int  # purged by both, for a different reason
    changes: tuple[PolicyChange, ...]
    lock_objections: tuple[PolicyChange, ...]  # why adopting the candidate would be refused


def _sample(item: PlannedMessage) -> MessageSample:
    return MessageSample(
        folder=item.folder,
        uid=item.uid,
        message_id=item.message_id,
        received=item.internal_date,
        reason=f"{item.reason_kind}:{item.reason_name}",
        detail=item.reason_detail,
    )


def _group(items: Iterable[PlannedMessage], samples: int) -> list[Shift]:
    groups: dict[tuple[str, str], Shift] = {}
    for item in items:
        reason = f"{item.reason_kind}:{item.reason_name}"
        shift = groups.setdefault((item.folder, reason), Shift(item.folder, reason))
        shift.messages += 1
        shift.bytes += item.size
        if len(shift.samples) < samples:
            shift.samples.append(_sample(item))
    return [groups[key] for key in sorted(groups)]


def simulate_policy(
    store: Store,
    current: Policy,
    candidate: Policy,
    *,
    account: str,
    now: datetime,
    actor: str,
    samples: int = 5,
) -> Simulation:
    """What ``candidate`` would purge at ``now`` that ``current`` keeps, and the reverse."""
    before = compute_plan(store, current, account=account, now=now, actor=actor)
    after = compute_plan(store, candidate, account=account, now=now, actor=actor)
    old = {item.message_row: item for item in before.items}
    new = {item.message_row: item for item in after.items}
    reason_changed = sum(
        1
        for row, item in new.items()
        if row in old
        and (old[row].reason_kind, old[row].reason_name) != (item.reason_kind, item.reason_name)
    )
    return Simulation(
        account=account,
        now=now,
        current_hash=current.source_hash,
        candidate_hash=candidate.source_hash,
        current=before.summary,
        candidate=after.summary,
        newly_purged=_group((i for r, i in new.items() if r not in old), samples),
        no_longer_purged=_group((i for r, i in old.items() if r not in new), samples),
        reason_changed=reason_changed,
        changes=compare_policies(current, candidate),
        lock_objections=lock_objections(store, candidate),
    )


@dataclass
class ReleaseGroup:
    """Messages of one folder that share an outcome once the hold is released."""

    folder: str
    outcome: str  # "purgeable at the next plan", "purgeable from 2027-03", "still kept: …"
    messages: int = 0
    bytes: int = 0
    earliest: datetime | None = None  # the first instant one of them becomes purgeable
    samples: list[MessageSample] = field(default_factory=list)


@dataclass
class HoldReleasePreview:
    hold: str
    account: str
    now: datetime
    covered: int  # messages the hold covers now (outside the quarantine)
    purgeable_now: int  # would be in the next plan (which still needs its approval)
    purgeable_later: int
    still_kept: int  # kept for another reason too (another hold, a case, a rule …)
    groups: list[ReleaseGroup]


def preview_hold_release(
    store: Store,
    policy: Policy,
    *,
    name: str,
    account: str,
    now: datetime,
    samples: int = 3,
) -> HoldReleasePreview:
    """Decide every message hold ``name`` covers as if the hold were gone; change nothing."""
    if not any(hold.name == name for hold in list_holds(store)):
        raise NotFoundError(f"no active hold named {name!r}; 'mailhygiene hold list' shows them")
    counts: Counter[str] = Counter()
    groups: dict[tuple[str, str], ReleaseGroup] = {}
    with store.transaction() as session:
        holds_for = hold_lookup(session, account=account, zone=policy.zone)
        without = _without(holds_for, name)
        for row in facts_queries.iter_indexed(
            session,
            account=account,
            holds_for=holds_for,
            exclude_folders=(policy.quarantine_folder,),
        ):
            if name not in row.facts.holds:
                continue
            verdict = decide(replace(row.facts, holds=without(row.message_row)), policy, now)
            deciding = verdict.reasons[0]
            if verdict.action is Action.PURGE:
                kind, outcome = "now", "purgeable at the next plan"
            elif verdict.keep_until is not None:
                local = verdict.keep_until.astimezone(policy.zone)
                kind, outcome = "later", f"purgeable from {local:%Y-%m}"
            else:
                kind = "kept"
                outcome = f"still kept: {deciding.kind.value} {deciding.name}"
            counts[kind] += 1
            group = groups.setdefault((row.folder, outcome), ReleaseGroup(row.folder, outcome))
            group.messages += 1
            group.bytes += row.facts.size
            if verdict.keep_until is not None and (
                group.earliest is None or verdict.keep_until < group.earliest
            ):
                group.earliest = verdict.keep_until
            if len(group.samples) < samples:
                group.samples.append(
                    MessageSample(
                        folder=row.folder,
                        uid=row.uid,
                        message_id=row.message_id,
                        received=row.facts.internal_date,
                        reason=f"{deciding.kind.value}:{deciding.name}",
                        detail=deciding.detail,
                    )
                )
    return HoldReleasePreview(
        hold=name,
        account=account,
        now=now,
        covered=sum(counts.values()),
        purgeable_now=counts["now"],
        purgeable_later=counts["later"],
        still_kept=counts["kept"],
        groups=[groups[key] for key in sorted(groups, key=_group_order)],
    )


def _group_order(key: tuple[str, str]) -> tuple[int, str, str]:
    folder, outcome = key
    rank = 0 if outcome.startswith("purgeable at") else 1 if outcome.startswith("purgeable") else 2
    return rank, outcome, folder


def _without(
    holds_for: Callable[[int], tuple[str, ...]], name: str
) -> Callable[[int], tuple[str, ...]]:
    return lambda row: tuple(hold for hold in holds_for(row) if hold != name)
