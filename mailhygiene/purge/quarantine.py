"""The quarantine: purged mail waits here for its grace period and can be restored.

Final deletion (``expunge_due``) is held to the same standard as a purge: each message
is re-identified on the server, must carry no case keyword, and must still be
purgeable by ``policy.decide`` now (judged with its original folder) using the index
row of the quarantine folder — so the quarantine folder must have been synced. Mail
an *erasure* plan moved here is judged as its execution was (nothing may bar erasure:
hold, case, legal obligation), not by retention, or it would wait out its whole
retention in the quarantine. The
ledger row is marked ``expunging`` before the server command (the journal) and a
resumed run settles such rows against the server first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases.service import link_after_sync
from mailhygiene.errors import FolderError, MoveInDoubt, NotFoundError
from mailhygiene.holds import hold_lookup
from mailhygiene.mailbox import FolderStatus, MessageIdentity
from mailhygiene.policy import Policy
from mailhygiene.purge.execute import is_protective_keyword, kept_now_check
from mailhygiene.purge.lock import account_lock
from mailhygiene.purge.model import PlanKind
from mailhygiene.store import facts_queries, governance_queries, purge_queries
from mailhygiene.store.models import QuarantineEntry
from mailhygiene.store.session import Session, Store


class QuarantineServer(Protocol):
    capabilities: frozenset[str]
    condstore: bool

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus: ...

    def create_folder(self, folder: str) -> None: ...

    def fetch_identity(self, uids: Sequence[int]) -> dict[int, MessageIdentity]: ...

    def search_message_id(self, message_id: str) -> list[int]: ...

    def move(self, uids: Sequence[int], destination: str) -> dict[int, int]: ...

    def delete(self, uids: Sequence[int], *, unchanged_since: int | None = None) -> set[int]: ...

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class QuarantinedMessage:
    id: int
    plan_ref: str
    original_folder: str
    message_id: str
    size: int
    moved_at: datetime
    purge_after: datetime
    state: str


@dataclass
class QuarantineReport:
    restored: int = 0
    expunged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def list_quarantine(
    store: Store, *, account: str, plan_ref: str | None = None, include_closed: bool = False
) -> list[QuarantinedMessage]:
    states = (
        ("held", "expunging", "restored", "expunged") if include_closed else ("held", "expunging")
    )
    with store.transaction() as session:
        entries = purge_queries.quarantine_entries(
            session, account=account, states=states, plan_ref=plan_ref
        )
        return [_view(entry) for entry in entries]


def _view(entry: QuarantineEntry) -> QuarantinedMessage:
    return QuarantinedMessage(
        id=entry.id,
        plan_ref=entry.plan_ref,
        original_folder=entry.original_folder,
        message_id=entry.message_id,
        size=entry.size,
        moved_at=entry.moved_at,
        purge_after=entry.purge_after,
        state=entry.state,
    )


def _locate(
    server: QuarantineServer, entries: Sequence[QuarantineEntry]
) -> tuple[dict[int, int], list[QuarantineEntry]]:
    """Map ledger entries to their current UID in the selected quarantine folder."""
    known = [e.quarantine_uid for e in entries if e.quarantine_uid]
    identities = server.fetch_identity(known) if known else {}
    located: dict[int, int] = {}
    missing: list[QuarantineEntry] = []
    for entry in entries:
        uid = entry.quarantine_uid
        ident = identities.get(uid) if uid else None
        if ident is not None and ident.message_id == entry.message_id and ident.size == entry.size:
            located[entry.id] = ident.uid
            continue
        found = server.search_message_id(entry.message_id)
        if found:
            located[entry.id] = found[-1]
        else:
            missing.append(entry)
    return located, missing


def restore(
    store: Store,
    server: QuarantineServer,
    policy: Policy,
    *,
    account: str,
    actor: str,
    now: datetime,
    entry_ids: Sequence[int] | None = None,
    plan_ref: str | None = None,
) -> QuarantineReport:
    """Move quarantined messages back to the folders they came from."""
    report = QuarantineReport()
    with store.transaction() as session:
        entries = purge_queries.quarantine_entries(
            session, account=account, states=("held",), plan_ref=plan_ref, ids=entry_ids
        )
    if not entries:
        raise NotFoundError("nothing in quarantine matches; 'mailhygiene quarantine list' shows it")
    with account_lock(store, account, now=now, purpose="restore from quarantine"):
        server.select(policy.quarantine_folder, readonly=False)
        located, missing = _locate(server, entries)
        by_folder: dict[str, list[QuarantineEntry]] = defaultdict(list)
        for entry in entries:
            if entry.id in located:
                by_folder[entry.original_folder].append(entry)
        skipped: Counter[str] = Counter()
        for folder, group in by_folder.items():
            server.create_folder(folder)
            restored = _move_back(server, policy, group, located, folder)
            if left := len(group) - len(restored):
                skipped["the server warned while moving it back; still in quarantine"] += left
            if not restored:
                continue
            with store.transaction() as session:
                purge_queries.close_quarantine_entries(
                    session, [e.id for e in restored], state="restored", at=now, by=actor
                )
                audit.append(
                    session,
                    actor=actor,
                    tag=AuditTag.QUARANTINE_RESTORE,
                    subject=folder,
                    data={"messages": len(restored), "plan_ref": plan_ref},
                    at=now,
                )
            report.restored += len(restored)
        if missing:
            skipped["not found in the quarantine folder"] = len(missing)
        report.skipped = dict(skipped)
    return report


def _move_back(
    server: QuarantineServer,
    policy: Policy,
    group: Sequence[QuarantineEntry],
    located: dict[int, int],
    folder: str,
) -> list[QuarantineEntry]:
    """Move ``group`` from the (selected) quarantine folder to ``folder``; returns the
    entries that left quarantine. When the server warns while moving (``MoveInDoubt``)
    its answer is not trusted: what is still in quarantine, by UID, Message-ID and size,
    stays held."""
    try:
        server.move([located[e.id] for e in group], folder)
    except MoveInDoubt:
        server.select(policy.quarantine_folder, readonly=False)
        still = server.fetch_identity([located[e.id] for e in group])
        return [
            e
            for e in group
            if (ident := still.get(located[e.id])) is None
            or (ident.message_id, ident.size) != (e.message_id, e.size)
        ]
    return list(group)


def expunge_due(
    store: Store,
    server: QuarantineServer,
    policy: Policy,
    *,
    account: str,
    actor: str,
    now: datetime,
) -> QuarantineReport:
    """Delete for good what has waited out the grace period and is still purgeable now."""
    report = QuarantineReport()
    skipped: Counter[str] = Counter()
    with account_lock(store, account, now=now, purpose="expunge the quarantine"):
        # why: a case may have been linked since the move; thread the indexed quarantine
        # copies and bring case links up to date before judging anything final.
        link_after_sync(store, policy, account, now, actor)
        with store.transaction() as session:
            settling = purge_queries.quarantine_entries(
                session, account=account, states=("expunging",)
            )
            due = [
                e
                for e in purge_queries.quarantine_entries(session, account=account)
                if e.purge_after <= now
            ]
        try:
            status = server.select(policy.quarantine_folder, readonly=False)
        except FolderError:
            return report
        if settling:
            _settle_expunging(store, server, settling, actor=actor, now=now)
        if not due:
            return report
        located, missing = _locate(server, due)
        skipped["not found in the quarantine folder"] += len(missing)
        with store.transaction() as session:
            holds_for = hold_lookup(session, account=account, zone=policy.zone)
            indexed = {
                row.uid: row
                for row in facts_queries.iter_indexed(
                    session,
                    account=account,
                    holds_for=holds_for,
                    only_folders=(policy.quarantine_folder,),
                )
            }
            erasures = _erasure_plan_refs(session, {e.plan_ref for e in due})
        kept_by_retention = kept_now_check(policy, PlanKind.PURGE)
        kept_from_erasure = kept_now_check(policy, PlanKind.ERASURE)
        identities = server.fetch_identity(list(located.values())) if located else {}
        approved: list[tuple[QuarantineEntry, int]] = []
        for entry in due:
            uid = located.get(entry.id)
            if uid is None:
                continue
            identity = identities.get(uid)
            row = indexed.get(uid)
            if identity is None or row is None or row.message_id != entry.message_id:
                # why: without a current index row we cannot know of new cases or holds
                skipped["not indexed yet in the quarantine folder; run sync first"] += 1
                continue
            if row.thread_id is None:
                # why: case links live on threads; an unthreaded row cannot show its case
                skipped["not threaded yet; run 'mailhygiene sync' first"] += 1
                continue
            if any(
                is_protective_keyword(k, policy)
                for k in frozenset(identity.flags) - row.facts.keywords
            ):
                # why: a mark made since the last sync may name a case the index cannot see
                skipped["case keyword added on the server since the last sync"] += 1
                continue
            facts = replace(
                row.facts, folder=entry.original_folder, keywords=frozenset(identity.flags)
            )
            kept_now = kept_from_erasure if entry.plan_ref in erasures else kept_by_retention
            reason = kept_now(facts, now)
            if reason is not None:
                skipped[f"kept now: {reason.kind.value} {reason.name}"] += 1
                continue
            approved.append((entry, uid))
        if approved:
            with store.transaction() as session:
                purge_queries.close_quarantine_entries(
                    session, [e.id for e, _ in approved], state="expunging", at=now, by=actor
                )
            modseqs = [
                identities[uid].modseq for _, uid in approved if identities[uid].modseq is not None
            ]
            refused = server.delete(
                [uid for _, uid in approved],
                unchanged_since=max(m for m in modseqs if m is not None)
                if server.condstore and modseqs
                else None,
            )
            gone = [(e, uid) for e, uid in approved if uid not in refused]
            with store.transaction() as session:
                purge_queries.close_quarantine_entries(
                    session, [e.id for e, _ in gone], state="expunged", at=now, by=actor
                )
                governance_queries.record_quarantine_tombstones(
                    session, {e.id: uid for e, uid in gone}, at=now
                )
                purge_queries.close_quarantine_entries(
                    session,
                    [e.id for e, uid in approved if uid in refused],
                    state="held",
                    at=now,
                    by=actor,
                )
                purge_queries.forget_messages(
                    session, account, policy.quarantine_folder, [uid for _, uid in gone]
                )
                audit.append(
                    session,
                    actor=actor,
                    tag=AuditTag.QUARANTINE_EXPUNGE,
                    subject=policy.quarantine_folder,
                    data={
                        "expunged": len(gone),
                        "refused_by_server": len(refused),
                        "uidvalidity": status.uidvalidity,
                    },
                    at=now,
                )
            report.expunged = len(gone)
            if refused:
                skipped["changed on the server during expunge"] += len(refused)
    report.skipped = dict(skipped)
    return report


def _erasure_plan_refs(session: Session, refs: set[str]) -> set[str]:
    """Which of ``refs`` are erasure plans (an unknown plan counts as a purge: stricter)."""
    found: set[str] = set()
    for ref in refs:
        try:
            if purge_queries.get_plan(session, ref).kind == PlanKind.ERASURE.value:
                found.add(ref)
        except NotFoundError:
            continue
    return found


def _settle_expunging(
    store: Store,
    server: QuarantineServer,
    entries: list[QuarantineEntry],
    *,
    actor: str,
    now: datetime,
) -> None:
    """A crash after marking ``expunging``: still there → back to held (unflagged); else gone."""
    located, missing = _locate(server, entries)
    if located:
        server.remove_flags(list(located.values()), ["\\Deleted"])
    with store.transaction() as session:
        purge_queries.close_quarantine_entries(
            session, list(located), state="held", at=now, by=actor
        )
        purge_queries.close_quarantine_entries(
            session, [e.id for e in missing], state="expunged", at=now, by=actor
        )
        # the expunge before the interruption deleted these for good: record the proof now
        governance_queries.record_quarantine_tombstones(
            session, {e.id: e.quarantine_uid for e in missing}, at=now
        )
