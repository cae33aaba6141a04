"""SQL for the message index: accounts, folders and messages as the server shows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from mailhygiene.errors import StoreError
from mailhygiene.mailbox import FlagUpdate, IndexedMessage
from mailhygiene.store.driver import write_messages
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
    """Insert a batch in ``session``'s transaction; rows already present for the same UID
    are replaced (resume-safe). The driver-level write (``driver.write_messages``) that
    the parallel indexer's workers use too."""
    if not messages:
        return
    connection = session.connection()
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - only after the connection was invalidated
        raise StoreError("the database connection was closed during the index insert")
    write_messages(driver, connection.dialect.name == "sqlite", folder_id, messages, now)


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
