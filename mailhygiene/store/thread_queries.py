"""SQL for threading: which messages need a thread, what the threaded ones say, writing ids.

Threading itself is pure (``mailhygiene.threads``); this module only moves its inputs and
results between the index and Python, fast enough for 100k messages in about a second:
Core statements, no ORM objects, dates read as stored and converted once, and thread ids
written with one ``executemany`` (SQLite) or one ``unnest`` update (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, String, false, func, select, type_coerce, update
from sqlalchemy.orm import Session

from mailhygiene.store.models import Account, CaseThread, Folder, Message
from mailhygiene.threads import ThreadInput

# pg_advisory_xact_lock key for "one threading writer at a time": the bytes of "mh-thrd".
THREADING_LOCK_KEY = 0x6D682D74687264
_CHUNK = 500
_ROWS_PER_FETCH = 5000

_DATE = type_coerce(func.coalesce(Message.date_header, Message.internal_date), String)
"""The message's own date (Date header, else INTERNALDATE) exactly as stored: text on
SQLite, ``datetime`` on PostgreSQL; :func:`_utc` turns either into aware UTC."""


IdentityRow = tuple[int, str, str, str, str]
"""``(row id, Message-ID, In-Reply-To, References, Thread-Index)`` of a threaded message;
a plain tuple straight from the cursor, since every message of the index is one."""


def lock_threading(session: Session) -> None:
    """Make this transaction the only one assigning thread ids until it ends.

    Two runs threading at once could each miss the other's new messages and give one
    conversation two ids. PostgreSQL: a transaction-scoped advisory lock. SQLite: a write
    statement matching no rows takes the single write lock (like ``BEGIN IMMEDIATE``),
    so every read after it sees the newest commit.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(THREADING_LOCK_KEY)))
    elif dialect == "sqlite":
        session.execute(
            update(CaseThread).where(false()).values(note=CaseThread.note),
            execution_options={"synchronize_session": False},
        )
    else:  # pragma: no cover - open_store accepts only these two
        raise NotImplementedError(f"no threading lock for the {dialect} dialect")


def count_unthreaded(session: Session, account: str) -> int:
    """How many of the account's messages have no thread id (uses the thread_id index)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Message)
            .join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Folder.account_id)
            .where(Message.thread_id.is_(None), Account.name == account)
        )
        or 0
    )


def unthreaded(session: Session, account: str) -> list[ThreadInput]:
    """Every message of ``account`` without a thread id, keyed by row id."""
    sql = (
        "SELECT m.id, m.message_id, m.in_reply_to, m.references_ids, m.thread_index, "
        "m.subject, COALESCE(m.date_header, m.internal_date) FROM messages m "
        "JOIN folders f ON f.id = m.folder_id JOIN accounts a ON a.id = f.account_id "
        "WHERE m.thread_id IS NULL AND a.name = {p} ORDER BY m.id"
    )
    return [_input(values) for values in _raw_rows(session, sql, (account,))]


def threaded_by_id(session: Session, row_ids: Iterable[int]) -> list[tuple[ThreadInput, str]]:
    """These messages (any account) with the thread id they have; unthreaded ones omitted."""
    ordered = sorted(set(row_ids))
    found: list[tuple[ThreadInput, str]] = []
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        statement = select(*_ROW_COLUMNS, Message.thread_id).where(
            Message.id.in_(chunk), Message.thread_id.is_not(None)
        )
        found.extend((_input(values), values[-1]) for values in _stream(session, statement))
    return found


def any_threaded(session: Session) -> bool:
    """Whether any message has a thread id yet (false before the first linking run)."""
    return (
        session.scalar(select(Message.id).where(Message.thread_id.is_not(None)).limit(1))
        is not None
    )


def threaded_identities(session: Session) -> Iterator[IdentityRow]:
    """Message-ID, In-Reply-To, References and Thread-Index of every threaded message."""
    sql = (
        "SELECT id, message_id, in_reply_to, references_ids, thread_index "
        "FROM messages WHERE thread_id IS NOT NULL"
    )
    return _raw_rows(session, sql, ())  # type: ignore[return-value]


def threaded_in_window(
    session: Session, start: datetime, end: datetime
) -> Iterator[tuple[int, str]]:
    """``(row id, subject)`` of threaded messages dated within ``[start, end]``."""
    dated = func.coalesce(Message.date_header, Message.internal_date)
    statement = select(Message.id, Message.subject).where(
        Message.thread_id.is_not(None), dated >= start, dated <= end, Message.subject != ""
    )
    for row_id, subject in _stream(session, statement):
        yield int(row_id), str(subject)


def set_thread_ids(session: Session, assigned: Mapping[int, str]) -> None:
    """Write ``row id → thread id`` for many messages at once."""
    if not assigned:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        ids = list(assigned)
        # Two bound arrays, one statement: ~20× faster than executemany on PostgreSQL.
        connection.exec_driver_sql(
            "UPDATE messages SET thread_id = u.thread_id "
            "FROM unnest(%s::bigint[], %s::text[]) AS u(row_id, thread_id) "
            "WHERE messages.id = u.row_id",
            (ids, [assigned[i] for i in ids]),
        )
        return
    # Straight to the DBAPI's executemany: SQLAlchemy's per-row parameter handling
    # costs more than SQLite's update itself. Constant SQL, bound values only.
    connection.exec_driver_sql(
        "UPDATE messages SET thread_id = ? WHERE id = ?",
        [(thread, row_id) for row_id, thread in assigned.items()],
    )


def rename_threads(session: Session, merges: Sequence[tuple[str, str]]) -> int:
    """Re-point messages from each merged-away thread id to its successor; rows changed."""
    changed = 0
    for old, new in merges:
        result = session.execute(
            update(Message).where(Message.thread_id == old).values(thread_id=new),
            execution_options={"synchronize_session": False},
        )
        changed += int(cast(CursorResult[Any], result).rowcount or 0)
    return changed


_ROW_COLUMNS = (
    Message.id,
    Message.message_id,
    Message.in_reply_to,
    Message.references_ids,
    Message.thread_index,
    Message.subject,
    _DATE,
)


def _stream(session: Session, statement: Any) -> Iterator[Sequence[Any]]:
    """Rows through the Core connection: no ORM result machinery on the hot path."""
    result = session.connection().execute(
        statement.execution_options(yield_per=_ROWS_PER_FETCH, stream_results=True)
    )
    for values in result:
        yield tuple(values)


def _raw_rows(session: Session, sql: str, params: tuple[object, ...]) -> Iterator[Sequence[Any]]:
    """Rows of a constant statement straight from the DBAPI cursor.

    The two scans over every message (first run: the new ones; later runs: the ids of
    the threaded ones) are the hot path; SQLAlchemy's result rows double their cost.
    ``sql`` is constant text with ``{p}`` where a bound parameter goes; no value is
    ever formatted into it.
    """
    connection = session.connection()
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql.format(p=marker), params)
        while batch := cursor.fetchmany(_ROWS_PER_FETCH):
            yield from batch
    finally:
        cursor.close()


def _input(values: Sequence[Any]) -> ThreadInput:
    row_id, message_id, in_reply_to, references, thread_index, subject, date = values[:7]
    return ThreadInput(
        row_id,
        message_id,
        in_reply_to,
        tuple(references.split()) if references else (),
        thread_index,
        subject,
        _utc(date),
    )


def _utc(value: object) -> datetime | None:
    """A stored naive-UTC instant (text on SQLite, datetime on PostgreSQL) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(value + "+00:00")  # type: ignore[operator]
    except (TypeError, ValueError):
        return None


__all__ = [
    "THREADING_LOCK_KEY",
    "IdentityRow",
    "any_threaded",
    "count_unthreaded",
    "lock_threading",
    "rename_threads",
    "set_thread_ids",
    "threaded_by_id",
    "threaded_identities",
    "threaded_in_window",
    "unthreaded",
]
