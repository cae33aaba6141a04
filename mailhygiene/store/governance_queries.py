"""SQL for policy versions (what rules ran, what was adopted) and tombstones (proof of
disposition: what was deleted for good, under which rule, by whose plan)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailhygiene.errors import NotFoundError, SafetyRefusal
from mailhygiene.store.models import (
    Account,
    Approval,
    Folder,
    Message,
    Plan,
    PlanItem,
    PolicyVersion,
    QuarantineEntry,
    Tombstone,
)

_CHUNK = 500


def message_id_hash(message_id: str) -> str:
    """sha256 (hex) of a Message-ID exactly as indexed (no angle brackets); "" if none.

    An auditor holding a message can recompute it to ask whether that message was
    deleted; the hash alone does not reveal the Message-ID's address-like text.
    """
    if not message_id.strip():
        return ""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


# -- policy versions -----------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def version_by_hash(session: Session, digest: str) -> PolicyVersion | None:
    return session.scalar(select(PolicyVersion).where(PolicyVersion.hash == digest))


def version_by_id(session: Session, version_id: int) -> PolicyVersion:
    version = session.get(PolicyVersion, version_id)
    if version is None:
        raise NotFoundError(
            f"no policy version {version_id}; 'mailhygiene rules history' lists them"
        )
    return version


def versions_by_hash_prefix(session: Session, prefix: str) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion).where(PolicyVersion.hash.startswith(prefix, autoescape=True))
        )
    )


def list_versions(session: Session) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.id)))


def ensure_version(
    session: Session, *, digest: str, text: str, lock: str, at: datetime, by: str
) -> PolicyVersion:
    """The version with ``digest``, created if new; an unknown text is filled in when given."""
    version = version_by_hash(session, digest)
    if version is None:
        # INSERT … ON CONFLICT DO NOTHING: a concurrent process may record it meanwhile.
        # (Not a SAVEPOINT: on pysqlite, releasing one that opened the transaction commits
        # it, so a later refusal could no longer roll the insert back.)
        insert = postgresql_insert if _dialect(session) == "postgresql" else sqlite_insert
        session.execute(
            insert(PolicyVersion)
            .values(hash=digest, text=text, lock=lock, loaded_at=at, loaded_by=by, adopted=False)
            .on_conflict_do_nothing(index_elements=["hash"])
        )
        version = version_by_hash(session, digest)
        if version is None:
            raise NotFoundError(f"policy version {digest[:12]} vanished while being recorded")
    if text and not version.text:
        version.text, version.lock = text, lock
    return version


def version_in_force(session: Session) -> PolicyVersion | None:
    """The most recently adopted version, or None when nothing was ever adopted."""
    return session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.adoption_seq.is_not(None))
        .order_by(PolicyVersion.adoption_seq.desc())
        .limit(1)
    )


def mark_adopted(session: Session, version: PolicyVersion, *, at: datetime, by: str) -> None:
    """Make ``version`` the policy in force (it may have been adopted before: re-adoption)."""
    latest = session.scalar(select(func.max(PolicyVersion.adoption_seq))) or 0
    version.adopted = True
    version.adopted_at, version.adopted_by = at, by
    version.adoption_seq = latest + 1
    try:
        session.flush()
    except IntegrityError:
        # why: another adoption took the same place in the order; it must be judged first
        raise SafetyRefusal(
            "another version was adopted at the same moment; run 'mailhygiene rules adopt' again"
        ) from None


# -- tombstones ----------------------------------------------------------------------------


def _approvers(session: Session, plan: Plan) -> str:
    names = session.scalars(
        select(Approval.approved_by)
        .where(
            Approval.plan_id == plan.id,
            Approval.decision == "approve",
            Approval.content_hash == plan.content_hash,
        )
        .order_by(Approval.id)
    )
    return ", ".join(names)


def _date_headers(session: Session, message_rows: Sequence[int]) -> dict[int, datetime | None]:
    found: dict[int, datetime | None] = {}
    for start in range(0, len(message_rows), _CHUNK):
        chunk = list(message_rows[start : start + _CHUNK])
        for row_id, date_header in session.execute(
            select(Message.id, Message.date_header).where(Message.id.in_(chunk))
        ):
            found[row_id] = date_header
    return found


def record_plan_tombstones(
    session: Session, *, plan_id: int, item_ids: Sequence[int], action: str, at: datetime
) -> int:
    """A tombstone for each of a plan's items just deleted for good; call it before the
    index rows are forgotten (the Date header is read from them)."""
    if not item_ids:
        return 0
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFoundError(f"no plan with id {plan_id}")
    approvers = _approvers(session, plan)
    items: list[PlanItem] = []
    for start in range(0, len(item_ids), _CHUNK):
        chunk = list(item_ids[start : start + _CHUNK])
        items += session.scalars(select(PlanItem).where(PlanItem.id.in_(chunk)))
    dates = _date_headers(session, [i.message_row for i in items if i.message_row])
    session.add_all(
        Tombstone(
            account=plan.account,
            message_id_hash=message_id_hash(item.message_id),
            folder=item.folder,
            internal_date=item.internal_date,
            date_header=dates.get(item.message_row) if item.message_row else None,
            size=item.size,
            rule=f"{item.reason_kind}:{item.reason_name}",
            policy_hash=plan.policy_hash,
            plan_ref=plan.ref,
            approvers=approvers,
            disposed_at=at,
            action=action,
        )
        for item in items
    )
    return len(items)


def record_quarantine_tombstones(
    session: Session, located: Mapping[int, int | None], *, at: datetime
) -> int:
    """A tombstone for each quarantine entry just deleted for good.

    ``located`` maps entry id → its UID in the quarantine folder (None if unknown), to
    read the Date header from the quarantine folder's index row before it is forgotten.
    The rule and dates come from the plan item that moved the message there.
    """
    if not located:
        return 0
    entries: list[QuarantineEntry] = []
    ids = list(located)
    for start in range(0, len(ids), _CHUNK):
        entries += session.scalars(
            select(QuarantineEntry).where(QuarantineEntry.id.in_(ids[start : start + _CHUNK]))
        )
    plans = {
        plan.ref: plan
        for plan in session.scalars(select(Plan).where(Plan.ref.in_({e.plan_ref for e in entries})))
    }
    approvers = {ref: _approvers(session, plan) for ref, plan in plans.items()}
    item_ids = [e.plan_item_id for e in entries if e.plan_item_id]
    items = {
        item.id: item for item in session.scalars(select(PlanItem).where(PlanItem.id.in_(item_ids)))
    }
    wanted: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        uid = located.get(entry.id)
        if uid:
            wanted.setdefault((entry.account, entry.quarantine_folder), []).append(uid)
    rows = {key: _indexed(session, *key, uids) for key, uids in wanted.items()}
    for entry in entries:
        plan = plans.get(entry.plan_ref)
        item = items.get(entry.plan_item_id) if entry.plan_item_id else None
        uid = located.get(entry.id)
        found = rows.get((entry.account, entry.quarantine_folder), {}).get(uid) if uid else None
        session.add(
            Tombstone(
                account=entry.account,
                message_id_hash=message_id_hash(entry.message_id),
                folder=entry.original_folder,
                internal_date=item.internal_date if item else (found[0] if found else None),
                date_header=found[1] if found else None,
                size=entry.size,
                rule=f"{item.reason_kind}:{item.reason_name}" if item else "",
                policy_hash=plan.policy_hash if plan else "",
                plan_ref=entry.plan_ref,
                approvers=approvers.get(entry.plan_ref, ""),
                disposed_at=at,
                action="moved",
            )
        )
    return len(entries)


def _indexed(
    session: Session, account: str, folder: str, uids: Sequence[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """UID → (INTERNALDATE, Date header) of ``folder``'s index rows among ``uids``."""
    found: dict[int, tuple[datetime | None, datetime | None]] = {}
    for start in range(0, len(uids), _CHUNK):
        for uid, internal_date, date_header in session.execute(
            select(Message.uid, Message.internal_date, Message.date_header)
            .join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Folder.account_id)
            .where(
                Account.name == account,
                Folder.name == folder,
                Message.uid.in_(list(uids[start : start + _CHUNK])),
            )
        ):
            found[uid] = (internal_date, date_header)
    return found


def tombstones(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    account: str | None = None,
) -> list[Tombstone]:
    """Tombstones disposed of in ``[since, until)``, oldest first."""
    query = select(Tombstone).where(Tombstone.disposed_at >= since)
    if until is not None:
        query = query.where(Tombstone.disposed_at < until)
    if account:
        query = query.where(Tombstone.account == account)
    return list(session.scalars(query.order_by(Tombstone.disposed_at, Tombstone.id)))


def delete_tombstones_before(session: Session, cutoff: datetime, *, account: str) -> int:
    """Delete ``account``'s tombstones disposed of at or before ``cutoff``; return how many."""
    condition = (Tombstone.disposed_at <= cutoff, Tombstone.account == account)
    count = session.scalar(select(func.count()).select_from(Tombstone).where(*condition)) or 0
    if count:
        session.execute(delete(Tombstone).where(*condition))
    return count


__all__ = [
    "delete_tombstones_before",
    "ensure_version",
    "list_versions",
    "mark_adopted",
    "message_id_hash",
    "record_plan_tombstones",
    "record_quarantine_tombstones",
    "tombstones",
    "version_by_hash",
    "version_by_id",
    "version_in_force",
    "versions_by_hash_prefix",
]
