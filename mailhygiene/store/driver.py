"""The database driver without SQLAlchemy: values as the drivers bind them, a connection for
a worker process, and the index's bulk write of messages.

Why a module that avoids SQLAlchemy: the parallel indexer's workers (``index_worker``) are
fresh interpreters that only parse and insert. Importing SQLAlchemy and the ORM models
costs each of them about 0.4 s of CPU at every sync, on the same cores the fetch and the
other worker need. Through the driver alone a worker starts in a tenth of that, and the
insert itself was already driver SQL. The ORM path (``index_queries.insert_messages``)
writes through the same function, so both write the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from mailhygiene.errors import StoreError
from mailhygiene.mailbox import IndexedMessage


def naive_utc(value: datetime | None) -> datetime | None:
    """What ``UTCDateTime`` binds: naive UTC (for the driver's own executemany)."""
    if value is None:
        return None
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """``UTCDateTime`` as SQLAlchemy's SQLite dialect writes it (``YYYY-MM-DD HH:MM:SS.ffffff``),
    so comparisons with SQLAlchemy-bound values order correctly."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value.isoformat(" ", "microseconds")[:26]  # drop the "+00:00"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def prepare_sqlite(connection: sqlite3.Connection) -> None:
    """What every SQLite connection of ours runs first (the store's engine and workers alike)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass(frozen=True)
class DriverTarget:
    """How another process reaches a store's database with the driver alone: the dialect
    and the driver's ``connect`` arguments as the store's engine uses them (passwords
    included: never shown)."""

    dialect: str
    args: tuple[Any, ...] = field(repr=False)
    params: dict[str, Any] = field(repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"


def connect(target: DriverTarget) -> Any:
    """A new driver connection to ``target`` (sqlite3 or psycopg), in a transaction on first
    use; ``StoreError`` in one line when the database cannot be opened, as ``open_store``."""
    if target.is_sqlite:
        try:
            connection = sqlite3.connect(*target.args, **target.params)
            prepare_sqlite(connection)
        except sqlite3.Error as exc:
            raise _cannot_open(exc) from None
        return connection
    import psycopg  # only PostgreSQL workers pay for it

    try:
        return psycopg.connect(*target.args, **target.params)
    except psycopg.Error as exc:
        raise _cannot_open(exc) from None


def _cannot_open(exc: Exception) -> StoreError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StoreError(
        f"an index worker cannot open the database: {reason} — check [database] url in the "
        "settings, then run the sync again: it resumes where it stopped"
    )


def write_messages(
    connection: Any, sqlite: bool, folder_id: int, messages: Sequence[IndexedMessage], now: datetime
) -> None:
    """Insert a batch on a driver connection, in its open transaction; rows already present
    for the same UID are replaced (resume-safe).

    One upsert on ``(folder_id, uid)`` per row (``INSERT … ON CONFLICT DO UPDATE``), so
    there is no separate DELETE pass and a re-fetched batch overwrites what a crashed
    run left. On SQLite, the driver's executemany: SQLAlchemy's per-row parameter
    processing costs more than SQLite's insert itself on this hot path. On PostgreSQL,
    binary ``COPY`` (a statement per row costs a round trip per row).
    """
    if not messages:
        return
    if not sqlite:
        _write_postgres(connection, folder_id, messages, now)
        return
    rows = _rows(folder_id, messages, sqlite_utc_text, sqlite_utc_text(now))
    cursor = connection.cursor()
    try:
        cursor.executemany(_SQLITE_UPSERT, rows)
    finally:
        cursor.close()


def _write_postgres(
    connection: Any, folder_id: int, messages: Sequence[IndexedMessage], now: datetime
) -> None:
    """Binary COPY straight into ``messages`` when none of the batch's UID range is stored
    yet (a first sync); otherwise COPY into a temporary table and upsert from there."""
    latest = {m.uid: m for m in messages}  # one statement may not touch a row twice
    rows = _rows(folder_id, latest.values(), naive_utc, naive_utc(now))
    with connection.cursor() as cursor:
        cursor.execute(_POSTGRES_ANY_STORED, (folder_id, min(latest), max(latest)))
        stored = cursor.fetchone() is not None
        if stored:
            cursor.execute(_POSTGRES_STAGE)
        target = "mh_messages_stage" if stored else "messages"
        with cursor.copy(_POSTGRES_COPY.format(target=target)) as copy:
            copy.set_types(_POSTGRES_TYPES)
            write = copy.write_row
            for row in rows:
                write(row)
        if stored:
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
_SQLITE_UPSERT = _upsert_sql(f"VALUES ({', '.join(['?'] * len(_COLUMNS))})")
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


__all__ = [
    "DriverTarget",
    "connect",
    "naive_utc",
    "prepare_sqlite",
    "sqlite_utc_text",
    "write_messages",
]
