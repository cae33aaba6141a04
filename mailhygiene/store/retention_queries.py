"""Retention verdicts stored with the index (``retention_verdicts``, see ``mailhygiene.retention``).

Which messages lack a current verdict, saving verdicts, and the two scans planning reads
instead of judging every message: the purgeable ones with their reasons, and the kept
ones by kind. A verdict counts only while its ``policy_key`` (and, for a policy with
keyword conditions, its ``flags``) match; anything else is as good as absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

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


def stale_select(
    account: str, key: VerdictKey, *, exclude_folders: Sequence[str], after: int, limit: int
) -> Select[*tuple[Any, ...]]:
    """``indexed_select`` narrowed to messages without a current verdict, ``after`` a row id."""
    query = (
        indexed_select(account)
        .outerjoin(StoredVerdict, StoredVerdict.message_id == Message.id)
        .where(Message.id > after, or_(StoredVerdict.message_id.is_(None), ~key.current()))
        .limit(limit)
    )
    if exclude_folders:
        query = query.where(Folder.name.not_in(list(exclude_folders)))
    return query


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


def _account_verdicts(account: str, key: VerdictKey, exclude_folders: Sequence[str]) -> Any:
    def narrowed(query: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
        query = (
            query.join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Folder.account_id)
            .join(StoredVerdict, StoredVerdict.message_id == Message.id)
            .where(Account.name == account, key.current())
        )
        if exclude_folders:
            query = query.where(Folder.name.not_in(list(exclude_folders)))
        return query

    return narrowed


PurgeableRow = tuple[int, str, int, int, str, int, datetime | None, str, str, str]
"""Row id, folder, UIDVALIDITY, UID, Message-ID, size, INTERNALDATE, and the verdict's
kind, name and detail: what a plan item needs."""


def purgeable(
    session: Session,
    account: str,
    key: VerdictKey,
    *,
    exclude_folders: Sequence[str],
    now: datetime,
) -> Iterator[PurgeableRow]:
    """Messages whose current verdict ends at or before ``now``, in row order."""
    query = _account_verdicts(account, key, exclude_folders)(
        select(
            Message.id,
            Folder.name,
            Folder.uidvalidity,
            Message.uid,
            Message.message_id,
            Message.size,
            type_coerce(Message.internal_date, NullType()),  # raw; parsed below, faster
            StoredVerdict.kind,
            StoredVerdict.name,
            StoredVerdict.detail,
        ).select_from(Message)
    ).where(StoredVerdict.keep_until <= now)
    session.flush()
    result = session.connection().execute(
        query.order_by(Message.id).execution_options(yield_per=_ROWS_PER_FETCH)
    )
    for rows in result.partitions():
        for row_id, folder, validity, uid, msgid, size, internal_date, kind, name, detail in rows:
            yield (
                row_id,
                folder,
                validity or 0,
                uid,
                msgid,
                size,
                aware_utc(internal_date),
                kind,
                name,
                detail,
            )


def kept_by_kind(
    session: Session,
    account: str,
    key: VerdictKey,
    *,
    exclude_folders: Sequence[str],
    now: datetime,
    leave_out: Collection[int] = (),
) -> Counter[str]:
    """How many messages each verdict kind keeps at ``now``, not counting ``leave_out``."""
    keeps = or_(StoredVerdict.keep_until.is_(None), StoredVerdict.keep_until > now)
    narrowed = _account_verdicts(account, key, exclude_folders)
    session.flush()
    connection = session.connection()
    counts: Counter[str] = Counter()
    totals = narrowed(
        select(StoredVerdict.kind, func.count()).select_from(Message).where(keeps)
    ).group_by(StoredVerdict.kind)
    for kind, count in connection.execute(totals):
        counts[kind] += count
    ids = sorted(leave_out)
    for start in range(0, len(ids), _CHUNK):
        chunk = narrowed(select(StoredVerdict.kind).select_from(Message)).where(
            keeps, Message.id.in_(ids[start : start + _CHUNK])
        )
        counts.subtract(connection.scalars(chunk))
    return +counts


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
