"""Retention verdicts stored with the index (``retention_verdicts``, see ``mailhygiene.retention``).

Which messages lack a current verdict, saving verdicts, and the two scans planning reads
instead of judging every message: the purgeable ones with their reasons, and the kept
ones by kind. A verdict counts only while its ``policy_key`` (and, for a policy with
keyword conditions, its ``flags``) match; anything else is as good as absent.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from mailhygiene.purge.model import ItemAction, PlannedMessage
from mailhygiene.store.case_queries import contains_ignoring_case
from mailhygiene.store.facts_queries import indexed_select
from mailhygiene.store.models import (
    Account,
    CaseThread,
    Folder,
    Message,
    StoredVerdict,
    aware_utc,
    naive_utc,
    sqlite_utc_text,
)

_ROWS_PER_FETCH = 5000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class VerdictKey:
    """Which stored verdicts are current: the policy's retention key, and whether the
    message's flags must also be what they were (the policy tests keywords)."""

    policy_key: str
    compare_flags: bool

    def current(self) -> ColumnElement[bool]:
        clause = StoredVerdict.policy_key == self.policy_key
        if self.compare_flags:
            clause = and_(clause, StoredVerdict.flags == Message.flags)
        return clause


def stale_ids(
    session: Session, account: str, key: VerdictKey, *, exclude_folders: Sequence[str]
) -> array[int]:
    """The account's messages without a current verdict, ascending (8 bytes each)."""
    query = (
        select(Message.id)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .outerjoin(StoredVerdict, StoredVerdict.message_id == Message.id)
        .where(Account.name == account, or_(StoredVerdict.message_id.is_(None), ~key.current()))
    )
    if exclude_folders:
        query = query.where(Folder.name.not_in(list(exclude_folders)))
    session.flush()
    ids = array("q", session.connection().scalars(query))
    return array("q", sorted(ids))


def facts_select(account: str, ids: Sequence[int]) -> Select[*tuple[Any, ...]]:
    """``indexed_select`` for the messages ``ids`` only."""
    return indexed_select(account).where(Message.id.in_(list(ids)))


_SAVE = (
    "INSERT INTO retention_verdicts (message_id, policy_key, flags, kind, name, keep_until, "
    "detail) VALUES ({markers}) ON CONFLICT (message_id) DO UPDATE SET "
    "policy_key = excluded.policy_key, flags = excluded.flags, kind = excluded.kind, "
    "name = excluded.name, keep_until = excluded.keep_until, detail = excluded.detail"
)


def save_verdicts(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert or replace verdicts, each a tuple in ``_SAVE``'s column order (``keep_until``
    an aware datetime or None).

    The driver's own executemany: SQLAlchemy's per-row parameter handling would cost
    more than the insert (a first plan writes one row per message of the mailbox).
    """
    if not rows:
        return
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    to_driver = sqlite_utc_text if sqlite else naive_utc
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        _SAVE.format(markers=", ".join([marker] * 7)),
        [(*row[:5], to_driver(row[5]), row[6]) for row in rows],
    )


def settle_bulk_save(session: Session) -> None:
    """After many verdicts were saved: on PostgreSQL, refresh the table's statistics, so
    that planning's joins are not planned for the empty table it was (SQLite's planner
    does not depend on them)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE retention_verdicts"))


def account_folders(
    session: Session, account: str, *, exclude_folders: Sequence[str]
) -> dict[int, tuple[str, int]]:
    """The account's folders but ``exclude_folders``: id → (name, UIDVALIDITY or 0)."""
    query = (
        select(Folder.id, Folder.name, Folder.uidvalidity)
        .join(Account, Account.id == Folder.account_id)
        .where(Account.name == account)
    )
    if exclude_folders:
        query = query.where(Folder.name.not_in(list(exclude_folders)))
    return {
        folder_id: (name, validity or 0) for folder_id, name, validity in session.execute(query)
    }


def _with_verdicts(
    query: Select[*tuple[Any, ...]], folder_ids: Collection[int], key: VerdictKey
) -> Select[*tuple[Any, ...]]:
    # why: the folders are known up front, so no row joins folders and accounts
    joined = query.select_from(Message).join(StoredVerdict, StoredVerdict.message_id == Message.id)
    return joined.where(Message.folder_id.in_(sorted(folder_ids)), key.current())


def purgeable(
    session: Session,
    folders: Mapping[int, tuple[str, int]],
    key: VerdictKey,
    *,
    now: datetime,
    action: ItemAction,
) -> Iterator[PlannedMessage]:
    """Plan items for the messages in ``folders`` whose current verdict ends at or before
    ``now``, with the verdict's reason, in no particular order."""
    if not folders:
        return
    query = _with_verdicts(
        select(
            Message.id,
            Message.folder_id,
            Message.uid,
            Message.message_id,
            Message.size,
            type_coerce(Message.internal_date, NullType()),  # raw; parsed below, faster
            StoredVerdict.kind,
            StoredVerdict.name,
            StoredVerdict.detail,
        ),
        folders,
        key,
    ).where(StoredVerdict.keep_until <= now)
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # why: rows are streamed through a server-side cursor, which PostgreSQL plans
        # for the first 10% of rows (nested loops); every row is read here
        connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
    result = connection.execute(query.execution_options(yield_per=_ROWS_PER_FETCH))
    for rows in result.partitions():
        for row_id, folder_id, uid, msgid, size, internal_date, kind, name, detail in rows:
            folder, validity = folders[folder_id]
            yield PlannedMessage(
                row_id,
                folder,
                validity,
                uid,
                msgid,
                size,
                aware_utc(internal_date),
                action,
                kind,
                name,
                detail,
            )


DueTotal = tuple[int, str, str, int, int]
"""Folder id, verdict kind, verdict name, messages, bytes."""


def due_totals(
    session: Session, folders: Collection[int], key: VerdictKey, *, now: datetime
) -> list[DueTotal]:
    """How many messages (and bytes) each folder and verdict makes purgeable at ``now``."""
    if not folders:
        return []
    columns = (Message.folder_id, StoredVerdict.kind, StoredVerdict.name)
    query = _with_verdicts(
        select(*columns, func.count(), func.coalesce(func.sum(Message.size), 0)), folders, key
    ).where(StoredVerdict.keep_until <= now)
    session.flush()
    # int(): PostgreSQL sums a BIGINT column as NUMERIC (a Decimal in Python)
    return [
        (folder_id, kind, name, int(count), int(size))
        for folder_id, kind, name, count, size in session.connection().execute(
            query.group_by(*columns)
        )
    ]


def kept_by_kind(
    session: Session, folders: Collection[int], key: VerdictKey, *, now: datetime
) -> Counter[str]:
    """How many messages each verdict kind keeps at ``now``."""
    if not folders:
        return Counter()
    keeps = or_(StoredVerdict.keep_until.is_(None), StoredVerdict.keep_until > now)
    totals = _with_verdicts(
        select(StoredVerdict.kind, func.count()).where(keeps), folders, key
    ).group_by(StoredVerdict.kind)
    session.flush()
    rows = session.connection().execute(totals)
    return Counter({kind: count for kind, count in rows})  # noqa: C416 - dict(Result) misreads


StoredVerdictRow = tuple[int, int, str, str, datetime | None]
"""Folder id, size, verdict kind, verdict name, keep until."""


def verdicts_of(
    session: Session, ids: Collection[int], key: VerdictKey
) -> Iterator[StoredVerdictRow]:
    """The current verdicts of the messages ``ids`` (looked up by row id, in chunks)."""
    ordered = sorted(ids)
    session.flush()
    connection = session.connection()
    for start in range(0, len(ordered), _CHUNK):
        query = (
            select(
                Message.folder_id,
                Message.size,
                StoredVerdict.kind,
                StoredVerdict.name,
                StoredVerdict.keep_until,
            )
            .join(StoredVerdict, StoredVerdict.message_id == Message.id)
            .where(Message.id.in_(ordered[start : start + _CHUNK]), key.current())
        )
        rows = connection.execute(query)
        for folder_id, size, kind, name, keep_until in rows:  # noqa: UP028 - plain tuples
            yield folder_id, size, kind, name, keep_until


def case_touched_rows(
    session: Session, account: str, *, case_keyword: str, exclude_folders: Sequence[str]
) -> set[int]:
    """Messages a case may bear on: in a linked thread, or with flags mentioning the case
    keyword (a superset of the keywords ``decide`` counts; those are judged in full)."""
    linked = select(CaseThread.thread_id).where(CaseThread.unlinked_at.is_(None))
    touched: ColumnElement[bool] = Message.thread_id.in_(linked)
    if case_keyword:
        ascii_only = session.get_bind().dialect.name == "sqlite"
        touched = or_(
            touched, contains_ignoring_case(Message.flags, case_keyword, ascii_only=ascii_only)
        )
    query = (
        select(Message.id)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(Account.name == account, touched)
    )
    if exclude_folders:
        query = query.where(Folder.name.not_in(list(exclude_folders)))
    return set(session.scalars(query))
