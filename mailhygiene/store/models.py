"""SQLAlchemy 2 typed models: the index of what is on the server, and our own records.

All instants are stored as UTC (``UTCDateTime``); nothing here knows a time zone.
Schema changes go through Alembic (``store/migrations``); ``tests`` fail when the
models and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores tz-aware datetimes as naive UTC; returns them tz-aware (UTC).

    SQLite has no time zones and PostgreSQL's ``timestamptz`` depends on the session
    zone; naive UTC in both keeps comparisons in SQL identical on both back ends.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass tz-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Account(Base):
    """An IMAP account as named in the settings file (credentials are never stored)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255))
    capabilities: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    last_sync_at: Mapped[datetime | None]


class Folder(Base):
    """One IMAP mailbox of an account and the sync state needed to resume incrementally."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    # Every UID below ``synced_uidnext`` has been fetched (or is known to be gone);
    # a sync interrupted halfway resumes from here.
    synced_uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    server_exists: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_at: Mapped[datetime | None]
    missing_since: Mapped[datetime | None]


class Message(Base):
    """What the index knows of one message on the server. Bodies are never stored."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_internal_date", "internal_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str] = mapped_column(String(998))
    references_ids: Mapped[str] = mapped_column(Text)
    thread_index: Mapped[str] = mapped_column(String(500))
    thread_topic: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    from_addr: Mapped[str] = mapped_column(String(320), index=True)
    from_name: Mapped[str] = mapped_column(Text)
    to_addrs: Mapped[str] = mapped_column(Text)
    cc_addrs: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str] = mapped_column(Text)
    date_header: Mapped[datetime | None]
    date_raw: Mapped[str | None] = mapped_column(Text)
    internal_date: Mapped[datetime | None]
    size: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    extra_headers: Mapped[str] = mapped_column(Text)
    problems: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[str | None] = mapped_column(String(100), index=True)
    indexed_at: Mapped[datetime]


class StoredVerdict(Base):
    """The retention rules' verdict on one message under one policy (``policy_key``).

    Derived data, written by ``mailhygiene.retention``: planning reads it instead of
    judging every message again. ``flags`` are the flags it was computed with when the
    policy has keyword conditions ("" otherwise); a verdict whose key or flags no longer
    match is stale and recomputed before it is used.
    """

    __tablename__ = "retention_verdicts"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    policy_key: Mapped[str] = mapped_column(String(64))
    flags: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    keep_until: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text)


class Case(Base):
    """A complaint case (reklamationsärende); its threads are kept while it is handled."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # open | closed
    created_how: Mapped[str] = mapped_column(String(20))  # manual | pattern | keyword | untriaged
    opened_at: Mapped[datetime]
    opened_by: Mapped[str] = mapped_column(String(200))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(200))
    close_reason: Mapped[str | None] = mapped_column(Text)


class CaseThread(Base):
    """A thread linked to a case: who linked it, when and how. Unlinking keeps the row."""

    __tablename__ = "case_threads"
    __table_args__ = (Index("ix_case_threads_thread_id", "thread_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    thread_id: Mapped[str] = mapped_column(String(100))
    how: Mapped[str] = mapped_column(String(20))  # manual | pattern | keyword | thread | merge
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    unlinked_at: Mapped[datetime | None]
    unlinked_by: Mapped[str | None] = mapped_column(String(200))
    unlink_reason: Mapped[str | None] = mapped_column(Text)


class Hold(Base):
    """A legal hold: every message matching ``query`` is kept, present and future."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    query: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    placed_at: Mapped[datetime]
    placed_by: Mapped[str] = mapped_column(String(200))
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(200))


class Plan(Base):
    """An immutable purge plan; approvals bind to ``content_hash``."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # purge | erasure | quarantine-expunge
    account: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # pending|approved|executing|done|rejected
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    planned_for: Mapped[datetime]  # the ``now`` the verdicts were computed at
    expires_at: Mapped[datetime]
    policy_hash: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    item_count: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text)  # JSON: totals by folder and rule, exclusions
    note: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None]


class _PlannedMessage:
    """The columns a plan's member (``PlanMember``) and its journal row (``PlanItem``)
    share: which message, as the server knows it, and why it is planned."""

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    message_row: Mapped[int | None] = mapped_column(Integer)
    folder: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998))
    size: Mapped[int] = mapped_column(BigInteger)
    internal_date: Mapped[datetime | None]
    action: Mapped[str] = mapped_column(String(20))  # move | delete
    reason_kind: Mapped[str] = mapped_column(String(30))
    reason_name: Mapped[str] = mapped_column(String(200))
    reason_detail: Mapped[str] = mapped_column(Text)


class PlanItem(_PlannedMessage, Base):
    """One message of a plan; ``state`` is the execution journal for it. Written from the
    plan's ``PlanMember`` rows when the plan starts executing.

    planned → in_flight (written *before* the server command) → done | skipped | failed.
    A resumed execution finds ``in_flight`` items and checks the server for where they are.

    ``plan_id`` is a foreign key on SQLite; on PostgreSQL triggers check it once per
    statement rather than once per row, with the same guarantees (migration 0009).
    """

    __tablename__ = "plan_items"
    __table_args__ = (Index("ix_plan_items_plan_state", "plan_id", "state"),)

    state: Mapped[str] = mapped_column(String(20), default="planned")
    outcome: Mapped[str] = mapped_column(Text, default="")
    batch: Mapped[int | None] = mapped_column(Integer)
    done_at: Mapped[datetime | None]


class PlanMember(_PlannedMessage, Base):
    """One message of a plan that has not started executing: what it is and why.

    A plan is stored as its members; ``purge execute`` writes them to the journal
    (``PlanItem``, the same columns and ids, ``planned``) as it starts, and removes them
    here. On PostgreSQL the members have no B-tree (they are only ever read by plan,
    through a BRIN index): storing and hashing the 77k items of a 100k mailbox's plan
    took 0.8 s as journal rows and takes 0.5 s as members. A plan that is never executed
    (superseded by the next night's, say) never writes a journal at all. Ids come from
    the journal's own sequence (PostgreSQL) or an autoincrement seeded past it (SQLite,
    migration 0010), so the journal keeps them.

    ``plan_id`` is checked as ``PlanItem.plan_id`` is (a foreign key on SQLite, triggers
    on PostgreSQL).
    """

    __tablename__ = "plan_members"
    __table_args__ = (
        Index("ix_plan_members_plan", "plan_id", postgresql_using="brin"),
        {"sqlite_autoincrement": True},
    )


class Approval(Base):
    """A person's approval of one plan, bound to the plan's content hash at that moment."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decision: Mapped[str] = mapped_column(String(20))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")


class QuarantineEntry(Base):
    """A message moved to quarantine: where it came from and when it may be deleted."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200), index=True)
    plan_item_id: Mapped[int | None] = mapped_column(Integer)
    plan_ref: Mapped[str] = mapped_column(String(40))
    original_folder: Mapped[str] = mapped_column(String(1000))
    quarantine_folder: Mapped[str] = mapped_column(String(1000))
    quarantine_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    quarantine_uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998))
    size: Mapped[int] = mapped_column(BigInteger)
    moved_at: Mapped[datetime]
    purge_after: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(20))  # held | restored | expunged
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(200))


class QuarantineDoubt(Base):
    """A message that a move whose outcome was in doubt (``MoveInDoubt``: the server
    warned, or said BYE, while moving) put in quarantine, by the server's COPYUID.

    Written before the batch is settled from the server; once it is, a doubt that no
    ledger entry claims is mail the server moved though it was not planned, and goes
    back to ``original_folder``. Kept until then, so a run that stops in between (the
    server ends the session, say) leaves the work to the next one.
    """

    __tablename__ = "quarantine_doubts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200), index=True)
    plan_ref: Mapped[str] = mapped_column(String(40))
    original_folder: Mapped[str] = mapped_column(String(1000))
    quarantine_folder: Mapped[str] = mapped_column(String(1000))
    quarantine_uid: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime]


class AuditEvent(Base):
    """Append-only, hash-chained record of every change (``audit/log.py`` writes it)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200), index=True)
    tag: Mapped[str] = mapped_column(String(100), index=True)
    subject: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class User(Base):
    """A person or service account allowed to use mailhygiene, with one role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # support | manager | admin | scheduler
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)


class Restriction(Base):
    """A restriction of processing (GDPR art. 18, or art. 17(3) where erasure is barred).

    Every message with ``email`` in its From, To, Cc or Reply-To — present and future,
    in any folder — is kept as retention says but hidden from search and explanations
    for everyone without ``restricted_read``, until the restriction is lifted.
    """

    __tablename__ = "restrictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    plus_addressing: Mapped[bool] = mapped_column(default=False)
    basis: Mapped[str] = mapped_column(Text)
    request_ref: Mapped[str] = mapped_column(String(200), default="")
    placed_at: Mapped[datetime]
    placed_by: Mapped[str] = mapped_column(String(200))
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class RunLock(Base):
    """One scheduled run per account; a lock older than its lease is taken over."""

    __tablename__ = "run_locks"

    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    lease_until: Mapped[datetime]


__all__ = [
    "Account",
    "Approval",
    "AuditEvent",
    "Base",
    "Case",
    "CaseThread",
    "Folder",
    "Hold",
    "Message",
    "Plan",
    "PlanItem",
    "PlanMember",
    "QuarantineEntry",
    "RunLock",
    "UTCDateTime",
    "User",
]


class SubjectRequest(Base):
    """A data-subject request (GDPR access or erasure): who asked, what was done, the deadline.

    ``kind`` is ``find``, ``export`` or ``erase``; ``status`` is ``open`` until answered
    (an erasure stays open until its plans have run), then ``done`` — or ``superseded``
    when a later erasure for the same reference replaces it. ``plan_ref`` holds the
    erasure plan references (one per account), space-separated.
    """

    __tablename__ = "subject_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    also_terms: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of strings
    kind: Mapped[str] = mapped_column(String(20))  # find | export | erase
    requested_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(200))
    request_ref: Mapped[str] = mapped_column(String(200), default="")
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), index=True)  # open | done | superseded
    found_count: Mapped[int] = mapped_column(Integer, default=0)
    exported_to: Mapped[str | None] = mapped_column(Text)
    plan_ref: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")


__all__ += ["SubjectRequest"]


class PolicyVersion(Base):
    """A rules file that a plan was made under or that was adopted: its hash and text.

    ``text`` is empty until someone who read the file records it (a plan made by code
    that holds only the parsed policy). ``adoption_seq`` orders adoptions: the version
    with the highest is the policy in force; its ``lock`` binds what may follow it.
    """

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(Text, default="")
    lock: Mapped[str] = mapped_column(String(20), default="")
    loaded_at: Mapped[datetime]
    loaded_by: Mapped[str] = mapped_column(String(200))
    adopted: Mapped[bool] = mapped_column(default=False)
    adopted_at: Mapped[datetime | None]
    adopted_by: Mapped[str | None] = mapped_column(String(200))
    adoption_seq: Mapped[int | None] = mapped_column(Integer, unique=True)


class Tombstone(Base):
    """Proof that one message was deleted for good: which, under what rule, by whose plan.

    No content and no addresses: the Message-ID only as its sha256. ``action`` is how
    the plan disposed of it: ``moved`` (to quarantine, deleted when its grace period
    ended — ``disposed_at`` is that deletion) or ``deleted`` (deleted directly).
    """

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    message_id_hash: Mapped[str] = mapped_column(String(64), index=True)
    folder: Mapped[str] = mapped_column(String(1000))
    internal_date: Mapped[datetime | None]
    date_header: Mapped[datetime | None]
    size: Mapped[int] = mapped_column(BigInteger)
    rule: Mapped[str] = mapped_column(String(240))  # the deciding reason, "kind:name"
    policy_hash: Mapped[str] = mapped_column(String(64))
    plan_ref: Mapped[str] = mapped_column(String(40))
    approvers: Mapped[str] = mapped_column(Text)  # comma-separated names
    disposed_at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(20))  # moved | deleted


__all__ += ["PolicyVersion", "Tombstone"]


class RunBatch(Base):
    """A run batch (``mailhygiene run --all-accounts``): every account runs once in it.

    Workers on any number of machines join a batch by its key; ``finished_at`` is set
    when its last account is done or failed (and cleared when a late joiner adds one).
    """

    __tablename__ = "run_batches"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    finished_at: Mapped[datetime | None]


class RunClaim(Base):
    """One account of a run batch, and the worker (``host:pid``) that claimed it.

    ``state`` is ``pending``, ``running``, ``done`` or ``failed``. A claim holds one
    connection slot on its IMAP ``host`` from ``claimed_at`` until ``released_at``
    (after the worker closed its connection) or until ``lease_until`` passes without a
    renewal (a crashed worker); a ``running`` claim whose lease ran out is claimed again.
    ``claimed_at``, ``lease_until`` and ``released_at`` are wall-clock times, never the
    simulated ``--now``; ``finished_at`` is the run's ``now``, as in its audit entry.
    """

    __tablename__ = "run_claims"
    __table_args__ = (Index("ix_run_claims_host_released_at", "host", "released_at"),)

    batch: Mapped[str] = mapped_column(ForeignKey("run_batches.key"), primary_key=True)
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20))  # pending | running | done | failed
    holder: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(40))  # the run's status when done
    error: Mapped[str | None] = mapped_column(Text)


__all__ += ["RunBatch", "RunClaim"]
