"""SQL for the message index: accounts, folders and messages as the server shows them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from mailhygiene.mailbox import FlagUpdate, IndexedMessage
from mailhygiene.store.models import Account, Folder, Message

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
    dropped = session.execute(delete(Message).where(Message.folder_id == folder_id)).rowcount
    session.execute(delete(Folder).where(Folder.id == folder_id))
    return int(dropped or 0)


def reset_folder(session: Session, folder_id: int, uidvalidity: int) -> int:
    """UIDVALIDITY changed: every stored UID is meaningless; forget them and start over."""
    dropped = session.execute(delete(Message).where(Message.folder_id == folder_id)).rowcount
    session.execute(
        update(Folder)
        .where(Folder.id == folder_id)
        .values(uidvalidity=uidvalidity, synced_uidnext=1, highestmodseq=None)
    )
    return int(dropped or 0)


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
    """Insert a batch; rows already present for the same UID are replaced (resume-safe)."""
    if not messages:
        return
    uids = [m.uid for m in messages]
    for start in range(0, len(uids), _DELETE_CHUNK):
        session.execute(
            delete(Message).where(
                Message.folder_id == folder_id, Message.uid.in_(uids[start : start + _DELETE_CHUNK])
            )
        )
    convert = _datetime_converter(session)
    stamp = convert(now)
    rows = [
        (
            folder_id,
            m.uid,
            m.message_id[:998],
            m.in_reply_to[:998],
            " ".join(m.references),
            m.thread_index[:500],
            m.thread_topic,
            m.subject,
            m.from_addr[:320],
            m.from_name,
            " ".join(m.to_addrs),
            " ".join(m.cc_addrs),
            " ".join(m.reply_to),
            convert(m.date_header),
            m.date_raw,
            convert(m.internal_date),
            m.size,
            " ".join(m.flags),
            m.modseq,
            json.dumps(m.extra_headers, ensure_ascii=False) if m.extra_headers else "{}",
            " ".join(m.problems) or None,
            None,
            stamp,
        )
        for m in messages
    ]
    connection = session.connection()
    # Straight to the DBAPI's executemany: SQLAlchemy's per-row parameter processing
    # costs more than SQLite's insert itself on the indexing hot path.
    connection.exec_driver_sql(_insert_sql(connection.dialect.paramstyle), rows)


_INSERT_COLUMNS = (
    "folder_id",
    "uid",
    "message_id",
    "in_reply_to",
    "references_ids",
    "thread_index",
    "thread_topic",
    "subject",
    "from_addr",
    "from_name",
    "to_addrs",
    "cc_addrs",
    "reply_to",
    "date_header",
    "date_raw",
    "internal_date",
    "size",
    "flags",
    "modseq",
    "extra_headers",
    "problems",
    "thread_id",
    "indexed_at",
)


def _insert_sql(paramstyle: str) -> str:
    marker = "?" if paramstyle == "qmark" else "%s"
    columns = ", ".join(_INSERT_COLUMNS)
    placeholders = ", ".join([marker] * len(_INSERT_COLUMNS))
    # Only constant column names and placeholders: no value is ever formatted into SQL.
    return f"INSERT INTO messages ({columns}) VALUES ({placeholders})"  # noqa: S608


def _datetime_converter(session: Session) -> Callable[[datetime | None], object]:
    """What ``UTCDateTime`` would bind: naive UTC; on SQLite, SQLAlchemy's exact text form
    (so comparisons with SQLAlchemy-bound values order correctly)."""
    sqlite = session.connection().dialect.name == "sqlite"

    def convert(value: datetime | None) -> object:
        if value is None:
            return None
        naive = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if sqlite else naive

    return convert


def apply_flag_updates(session: Session, folder_id: int, updates: Sequence[FlagUpdate]) -> int:
    """Store changed flags; returns how many rows really changed."""
    if not updates:
        return 0
    query = select(Message.uid, Message.flags).where(Message.folder_id == folder_id)
    if len(updates) <= _DELETE_CHUNK:
        query = query.where(Message.uid.in_([u.uid for u in updates]))
    current = dict(session.execute(query).tuples())
    changed = [
        {"b_uid": u.uid, "b_flags": " ".join(u.flags), "b_modseq": u.modseq}
        for u in updates
        if u.uid in current and current[u.uid] != " ".join(u.flags)
    ]
    if changed:
        session.connection().execute(
            update(Message.__table__)
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
        removed += int(result.rowcount or 0)
    return removed
