"""SQL for the message index: accounts, folders and messages as the server shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any, cast

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlalchemy.orm import Session

from mailhygiene.errors import StoreError
from mailhygiene.mailbox import FlagUpdate, IndexedMessage
from mailhygiene.store.models import Account, Folder, Message, naive_utc, sqlite_utc_text

_DELETE_CHUNK = 500


@dataclass(frozen=True)
class FolderState:
    """What the index knows of a folder's sync position."""

    id: int
    name: str
    uidvalidity: int | None
    synced_uidnext: int
    highestmodseq: int | None
    message_count: int


def ensure_account(session: Session, name: str, host: str, username: str, now: datetime) -> int:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        account = Account(name=name, host=host, username=username, capabilities="", created_at=now)
        session.add(account)
        session.flush()
    else:
        account.host, account.username = host, username
    return account.id


def record_account_sync(
    session: Session, account_id: int, capabilities: Iterable[str], now: datetime
) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(capabilities=" ".join(sorted(capabilities)), last_sync_at=now)
    )


def ensure_folder(session: Session, account_id: int, name: str) -> FolderState:
    folder = session.scalar(
        select(Folder).where(Folder.account_id == account_id, Folder.name == name)
    )
    if folder is None:
        folder = Folder(account_id=account_id, name=name, synced_uidnext=1, server_exists=0)
        session.add(folder)
        session.flush()
    count = session.scalar(select(func.count()).where(Message.folder_id == folder.id)) or 0
    return FolderState(
        id=folder.id,
        name=folder.name,
        uidvalidity=folder.uidvalidity,
        synced_uidnext=folder.synced_uidnext,
        highestmodseq=folder.highestmodseq,
        message_count=count,
    )


def folder_names(session: Session, account_id: int) -> list[str]:
    return list(session.scalars(select(Folder.name).where(Folder.account_id == account_id)))


def drop_folder(session: Session, account_id: int, name: str) -> int:
    """Forget a folder that no longer exists on the server; returns messages dropped."""
    folder_id = session.scalar(
        select(Folder.id).where(Folder.account_id == account_id, Folder.name == name)
    )
    if folder_id is None:
        return 0
    dropped = _rowcount(session.execute(delete(Message).where(Message.folder_id == folder_id)))
    session.execute(delete(Folder).where(Folder.id == folder_id))
    return dropped


def reset_folder(session: Session, folder_id: int, uidvalidity: int) -> int:
    """UIDVALIDITY changed: every stored UID is meaningless; forget them and start over."""
    dropped = _rowcount(session.execute(delete(Message).where(Message.folder_id == folder_id)))
    session.execute(
        update(Folder)
        .where(Folder.id == folder_id)
        .values(uidvalidity=uidvalidity, synced_uidnext=1, highestmodseq=None)
    )
    return dropped


def set_folder_position(
    session: Session,
    folder_id: int,
    *,
    uidvalidity: int | None = None,
    synced_uidnext: int | None = None,
    highestmodseq: int | None = None,
    server_exists: int | None = None,
    synced_at: datetime | None = None,
) -> None:
    values: dict[str, object] = {}
    if uidvalidity is not None:
        values["uidvalidity"] = uidvalidity
    if synced_uidnext is not None:
        values["synced_uidnext"] = synced_uidnext
    if highestmodseq is not None:
        values["highestmodseq"] = highestmodseq
    if server_exists is not None:
        values["server_exists"] = server_exists
    if synced_at is not None:
        values["last_sync_at"] = synced_at
    if values:
        session.execute(update(Folder).where(Folder.id == folder_id).values(**values))


def insert_messages(
    session: Session, folder_id: int, messages: Sequence[IndexedMessage], now: datetime
) -> None:
    """Insert a batch; rows already present for the same UID are replaced (resume-safe).

    One upsert on ``(folder_id, uid)`` per row (``INSERT … ON CONFLICT DO UPDATE``), so
    there is no separate DELETE pass and a re-fetched batch overwrites what a crashed
    run left. On SQLite, straight to the DBAPI's executemany: SQLAlchemy's per-row
    parameter processing costs more than SQLite's insert itself on this hot path. On
    PostgreSQL, binary ``COPY`` (a statement per row costs a round trip per row).
    """
    if not messages:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _insert_postgres(connection, folder_id, messages, now)
        return
    rows = _rows(folder_id, messages, sqlite_utc_text, sqlite_utc_text(now))
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(_upsert_sql(f"VALUES ({', '.join([marker] * len(_COLUMNS))})"), rows)


def _insert_postgres(
    connection: Connection, folder_id: int, messages: Sequence[IndexedMessage], now: datetime
) -> None:
    """Binary COPY straight into ``messages`` when none of the batch's UID range is stored
    yet (a first sync); otherwise COPY into a temporary table and upsert from there."""
    latest = {m.uid: m for m in messages}  # one statement may not touch a row twice
    rows = _rows(folder_id, latest.values(), naive_utc, naive_utc(now))
    stored = connection.exec_driver_sql(
        _POSTGRES_ANY_STORED, (folder_id, min(latest), max(latest))
    ).first()
    if stored is not None:
        connection.exec_driver_sql(_POSTGRES_STAGE)
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - only after the connection was invalidated
        raise StoreError("the database connection was closed during the index insert")
    with driver.cursor() as cursor:
        target = "messages" if stored is None else "mh_messages_stage"
        with cursor.copy(_POSTGRES_COPY.format(target=target)) as copy:
            copy.set_types(_POSTGRES_TYPES)
            write = copy.write_row
            for row in rows:
                write(row)
        if stored is not None:
            cursor.execute(_POSTGRES_UPSERT)


def _rows(
    folder_id: int,
    messages: Iterable[IndexedMessage],
    convert: Callable[[datetime | None], object],
    stamp: object,
) -> list[tuple[object, ...]]:
    """Row tuples in ``_COLUMNS`` order; the same values ``Message`` would be given."""
    join, extra = " ".join, _json_object
    return [
        (
            folder_id,
            m.uid,
            m.message_id[:998],
            m.in_reply_to[:998],
            join(m.references),
            m.thread_index[:500],
            m.thread_topic,
            m.subject,
            m.from_addr[:320],
            m.from_name,
            join(m.to_addrs),
            join(m.cc_addrs),
            join(m.reply_to),
            convert(m.date_header),
            m.date_raw,
            convert(m.internal_date),
            m.size,
            join(m.flags),
            m.modseq,
            extra(m.extra_headers) if m.extra_headers else "{}",
            join(m.problems) or None,
            None,
            stamp,
        )
        for m in messages
    ]


_COLUMNS = (
    ("folder_id", "integer"),
    ("uid", "bigint"),
    ("message_id", "varchar"),
    ("in_reply_to", "varchar"),
    ("references_ids", "text"),
    ("thread_index", "varchar"),
    ("thread_topic", "text"),
    ("subject", "text"),
    ("from_addr", "varchar"),
    ("from_name", "text"),
    ("to_addrs", "text"),
    ("cc_addrs", "text"),
    ("reply_to", "text"),
    ("date_header", "timestamp"),
    ("date_raw", "text"),
    ("internal_date", "timestamp"),
    ("size", "bigint"),
    ("flags", "text"),
    ("modseq", "bigint"),
    ("extra_headers", "text"),
    ("problems", "text"),
    ("thread_id", "varchar"),
    ("indexed_at", "timestamp"),
)


def _upsert_sql(source: str) -> str:
    names = [name for name, _type in _COLUMNS]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[2:])
    # Only constant column names and placeholders: no value is ever formatted into SQL.
    insert = f"INSERT INTO messages ({', '.join(names)}) {source}"
    return f"{insert} ON CONFLICT (folder_id, uid) DO UPDATE SET {updates}"


_NAMES = ", ".join(name for name, _type in _COLUMNS)
_POSTGRES_TYPES = [sql_type for _name, sql_type in _COLUMNS]
_POSTGRES_ANY_STORED = (
    "SELECT 1 FROM messages WHERE folder_id = %s AND uid >= %s AND uid <= %s LIMIT 1"
)
_POSTGRES_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS mh_messages_stage ON COMMIT DELETE ROWS AS "  # noqa: S608
    f"SELECT {_NAMES} FROM messages WITH NO DATA"
)
_POSTGRES_COPY = "COPY {target} (" + _NAMES + ") FROM STDIN (FORMAT BINARY)"
_POSTGRES_UPSERT = _upsert_sql(f"SELECT {_NAMES} FROM mh_messages_stage")  # noqa: S608


def _json_object(values: dict[str, str]) -> str:
    """``json.dumps(values, ensure_ascii=False)`` for a str → str dict, at a third of the cost."""
    quote = encode_basestring
    return "{" + ", ".join([quote(k) + ": " + quote(v) for k, v in values.items()]) + "}"


def apply_flag_updates(session: Session, folder_id: int, updates: Sequence[FlagUpdate]) -> int:
    """Store changed flags; returns how many rows really changed."""
    if not updates:
        return 0
    query = select(Message.uid, Message.flags).where(Message.folder_id == folder_id)
    if len(updates) <= _DELETE_CHUNK:
        query = query.where(Message.uid.in_([u.uid for u in updates]))
    current = {uid: flags for uid, flags in session.execute(query)}  # noqa: C416 - see _pairs
    changed = [
        {"b_uid": u.uid, "b_flags": " ".join(u.flags), "b_modseq": u.modseq}
        for u in updates
        if u.uid in current and current[u.uid] != " ".join(u.flags)
    ]
    if changed:
        session.connection().execute(
            update(Message)
            .where(Message.folder_id == folder_id, Message.uid == bindparam("b_uid"))
            .values(flags=bindparam("b_flags"), modseq=bindparam("b_modseq")),
            changed,
        )
    return len(changed)


def stored_uids(session: Session, folder_id: int, below: int | None = None) -> set[int]:
    query = select(Message.uid).where(Message.folder_id == folder_id)
    if below is not None:
        query = query.where(Message.uid < below)
    return set(session.scalars(query))


def count_from_uid(session: Session, folder_id: int, first_uid: int) -> int:
    """How many rows the folder has at or above ``first_uid``."""
    query = select(func.count()).where(Message.folder_id == folder_id, Message.uid >= first_uid)
    return int(session.scalar(query) or 0)


def stored_uids_between(session: Session, folder_id: int, low: int, high: int) -> set[int]:
    """The folder's stored UIDs from ``low`` to ``high``, both included."""
    query = select(Message.uid).where(
        Message.folder_id == folder_id, Message.uid >= low, Message.uid <= high
    )
    return set(session.scalars(query))


def delete_uids(session: Session, folder_id: int, uids: Iterable[int]) -> int:
    """Forget messages that are gone from the server; returns rows removed."""
    ordered = sorted(uids)
    removed = 0
    for start in range(0, len(ordered), _DELETE_CHUNK):
        result = session.execute(
            delete(Message).where(
                Message.folder_id == folder_id,
                Message.uid.in_(ordered[start : start + _DELETE_CHUNK]),
            )
        )
        removed += _rowcount(result)
    return removed


def _rowcount(result: Result[Any]) -> int:
    """Rows a DML statement touched (DML results are cursor results)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)
