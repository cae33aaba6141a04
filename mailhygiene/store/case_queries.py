"""SQL for complaint cases and their thread links.

A link is a ``case_threads`` row; it is *active* while ``unlinked_at`` is NULL. Unlinking
keeps the row, so "who linked this, who unlinked it and why" stays answerable. Case refs
are stored upper-case (``mailhygiene.query`` and ``search_queries`` compare that way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    distinct,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from mailhygiene.cases.detect import keyword_for_case
from mailhygiene.errors import InputError
from mailhygiene.store.models import Account, Case, CaseThread, Folder, Message
from mailhygiene.store.session import among

_CHUNK = 500
_T = TypeVar("_T", int, str)


@dataclass(frozen=True, slots=True)
class LinkRow:
    """One active link as the linking rules need it."""

    link_id: int
    case_id: int
    ref: str
    status: str
    thread_id: str
    how: str


@dataclass(frozen=True, slots=True)
class FlaggedMessage:
    """A message whose flags mention the case keyword (generic or per-case)."""

    row_id: int
    thread_id: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """Where a message is on the server, with the flags the index last saw."""

    row_id: int
    account: str
    folder_id: int
    folder: str
    uidvalidity: int | None
    uid: int
    thread_id: str
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseMessage:
    """One message of a case, for ``case show``."""

    row_id: int
    account: str
    folder: str
    uid: int
    thread_id: str
    message_id: str
    subject: str
    from_addr: str
    date: datetime | None
    internal_date: datetime | None
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseCounts:
    """A case with how many threads and messages it holds now."""

    case: Case
    threads: int
    messages: int
    last_activity: datetime | None


@dataclass(frozen=True, slots=True)
class CaseRef:
    """A case's identity and status, without an ORM object (for bulk linking)."""

    id: int
    ref: str
    status: str


# -- cases -----------------------------------------------------------------------------


def find_case(session: Session, ref: str) -> CaseRef | None:
    row = session.execute(select(Case.id, Case.ref, Case.status).where(Case.ref == ref)).first()
    return None if row is None else CaseRef(row[0], row[1], row[2])


def insert_case(
    session: Session, *, ref: str, title: str, created_how: str, actor: str, now: datetime
) -> CaseRef:
    """Create an open case with a Core insert: no ORM object joins the session, so many
    of them (a first run over an old mailbox) stay cheap to flush."""
    case_id = session.execute(
        insert(Case)
        .values(
            ref=ref,
            title=title,
            status="open",
            created_how=created_how,
            opened_at=now,
            opened_by=actor,
        )
        .returning(Case.id)
    ).scalar_one()
    return CaseRef(case_id, ref, "open")


def insert_link(
    session: Session,
    *,
    case_id: int,
    thread_id: str,
    how: str,
    actor: str,
    now: datetime,
    note: str = "",
) -> None:
    """Link a thread with a Core insert (see :func:`insert_case`)."""
    session.execute(
        insert(CaseThread).values(
            case_id=case_id,
            thread_id=thread_id,
            how=how,
            linked_at=now,
            linked_by=actor,
            note=note,
        )
    )


def get_case(session: Session, ref: str) -> Case | None:
    return session.scalar(select(Case).where(Case.ref == ref))


def get_case_by_id(session: Session, case_id: int) -> Case | None:
    return session.get(Case, case_id)


def add_case(
    session: Session,
    *,
    ref: str,
    title: str,
    created_how: str,
    actor: str,
    now: datetime,
) -> Case:
    case = Case(
        ref=ref,
        title=title,
        status="open",
        created_how=created_how,
        opened_at=now,
        opened_by=actor,
    )
    session.add(case)
    session.flush()
    return case


def refs_starting(session: Session, prefix: str) -> list[str]:
    """Refs beginning with ``prefix`` (``UNTRIAGED-20261101-``), to number the next one."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(session.scalars(select(Case.ref).where(Case.ref.like(escaped + "%", escape="\\"))))


def account_names(session: Session) -> list[str]:
    return list(session.scalars(select(Account.name).order_by(Account.name)))


def list_cases(
    session: Session, *, status: str | None = None, case_id: int | None = None
) -> list[CaseCounts]:
    """Cases (newest first) with their active thread and message counts."""
    threads = (
        select(
            CaseThread.case_id,
            func.count(distinct(CaseThread.thread_id)).label("threads"),
        )
        .where(CaseThread.unlinked_at.is_(None))
        .group_by(CaseThread.case_id)
        .subquery()
    )
    linked = (
        select(CaseThread.case_id, CaseThread.thread_id)
        .where(CaseThread.unlinked_at.is_(None))
        .distinct()
        .subquery()
    )
    messages = (
        select(
            linked.c.case_id,
            func.count(Message.id).label("messages"),
            func.max(Message.internal_date).label("last"),
        )
        .join(Message, Message.thread_id == linked.c.thread_id)
        .group_by(linked.c.case_id)
        .subquery()
    )
    query = (
        select(Case, threads.c.threads, messages.c.messages, messages.c["last"])
        .outerjoin(threads, threads.c.case_id == Case.id)
        .outerjoin(messages, messages.c.case_id == Case.id)
        .order_by(Case.opened_at.desc(), Case.id.desc())
    )
    if status is not None:
        query = query.where(Case.status == status)
    if case_id is not None:
        query = query.where(Case.id == case_id)
    return [
        CaseCounts(case, threads or 0, count or 0, last)
        for case, threads, count, last in session.execute(query)
    ]


def rename_case(session: Session, case: Case, new_ref: str) -> None:
    case.ref = new_ref
    session.flush()


# -- links -----------------------------------------------------------------------------


def active_links(session: Session, thread_ids: Iterable[str]) -> dict[str, list[LinkRow]]:
    """Active links of these threads, by thread id (each thread's in link order).

    One statement with the ids bound as one value (``among``), whatever their number: the
    linking after a first sync asks for every new thread (80k at 100k messages), and 500
    ids a statement took 1.3 s of the 5 s linking on PostgreSQL.
    """
    wanted = sorted(set(thread_ids))
    if not wanted:
        return {}
    sqlite = _is_sqlite(session)
    condition, listed = among(sqlite, wanted)
    rows = session.connection().exec_driver_sql(
        _ACTIVE_LINKS.format(condition=condition), (listed,)
    )
    found: dict[str, list[LinkRow]] = {}
    for values in rows:
        link = LinkRow(*values)
        found.setdefault(link.thread_id, []).append(link)
    return found


_ACTIVE_LINKS = (
    "SELECT ct.id, c.id, c.ref, c.status, ct.thread_id, ct.how "
    "FROM case_threads AS ct JOIN cases AS c ON c.id = ct.case_id "
    "WHERE ct.thread_id {condition} AND ct.unlinked_at IS NULL ORDER BY ct.id"
)


def case_links(session: Session, case_id: int, *, active_only: bool = True) -> list[CaseThread]:
    query = select(CaseThread).where(CaseThread.case_id == case_id).order_by(CaseThread.id)
    if active_only:
        query = query.where(CaseThread.unlinked_at.is_(None))
    return list(session.scalars(query))


def unlinked_pairs(session: Session, thread_ids: Iterable[str]) -> set[tuple[int, str]]:
    """``(case id, thread id)`` pairs a person unlinked and nobody linked again since."""
    pairs: set[tuple[int, str]] = set()
    for chunk in _chunks(thread_ids):
        rows = session.execute(
            select(CaseThread.case_id, CaseThread.thread_id, CaseThread.unlinked_at).where(
                CaseThread.thread_id.in_(chunk)
            )
        )
        active: set[tuple[int, str]] = set()
        for case_id, thread_id, unlinked_at in rows:
            (pairs if unlinked_at is not None else active).add((case_id, thread_id))
        pairs -= active
    return pairs


def add_link(
    session: Session,
    *,
    case_id: int,
    thread_id: str,
    how: str,
    actor: str,
    now: datetime,
    note: str = "",
) -> CaseThread:
    link = CaseThread(
        case_id=case_id,
        thread_id=thread_id,
        how=how,
        linked_at=now,
        linked_by=actor,
        note=note,
    )
    session.add(link)
    session.flush()
    return link


def unlink(
    session: Session,
    case_id: int,
    thread_ids: Iterable[str],
    *,
    actor: str,
    now: datetime,
    reason: str,
) -> int:
    """End the active links of ``case_id`` to these threads; returns links ended."""
    ended = 0
    for chunk in _chunks(thread_ids):
        result = session.execute(
            update(CaseThread)
            .where(
                CaseThread.case_id == case_id,
                CaseThread.thread_id.in_(chunk),
                CaseThread.unlinked_at.is_(None),
            )
            .values(unlinked_at=now, unlinked_by=actor, unlink_reason=reason),
            execution_options={"synchronize_session": False},
        )
        ended += int(cast(CursorResult[Any], result).rowcount or 0)
    return ended


def move_links(session: Session, from_case: int, to_case: int, *, note: str) -> int:
    """Give every link of ``from_case`` (active or not) to ``to_case``; returns rows moved."""
    result = session.execute(
        update(CaseThread)
        .where(CaseThread.case_id == from_case)
        .values(case_id=to_case, note=func.trim(CaseThread.note + " " + note)),
        execution_options={"synchronize_session": False},
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def repoint_links(
    session: Session, merges: Sequence[tuple[str, str]], *, note_suffix: str
) -> list[tuple[str, str, str, int]]:
    """Move links from merged-away thread ids to the surviving ones (active and ended).

    Returns ``(ref, old thread, new thread, active)`` per moved link, ``active`` 1 or 0.
    Both sides keep every link they had: a case linked to either thread is linked to
    the merged one.
    """
    moved: list[tuple[str, str, str, int]] = []
    for old, new in merges:
        rows = session.execute(
            select(CaseThread.id, Case.ref, CaseThread.unlinked_at)
            .join(Case, Case.id == CaseThread.case_id)
            .where(CaseThread.thread_id == old)
        )
        ids: list[int] = []
        for link_id, ref, unlinked_at in rows:
            ids.append(link_id)
            moved.append((ref, old, new, int(unlinked_at is None)))
        if ids:
            note = f"[thread {old} merged into {new} {note_suffix}]"
            session.execute(
                update(CaseThread)
                .where(CaseThread.id.in_(ids))
                .values(thread_id=new, note=func.trim(CaseThread.note + " " + note)),
                execution_options={"synchronize_session": False},
            )
    return moved


# -- messages as the linking rules see them ----------------------------------------------


def flagged_messages(session: Session, account: str, keyword: str) -> list[FlaggedMessage]:
    """Messages of ``account`` that keyword linking must look at.

    Those with a flag starting with ``keyword + "_"`` (a per-case keyword, always looked
    at), and those carrying ``keyword`` itself whose thread has no active link (a linked
    thread is already protected; mirroring puts the keyword on all of its messages, so
    this keeps the scan small). Case-insensitive; the caller parses the flags.
    """
    unlinked_thread = ~exists(
        select(CaseThread.id).where(
            CaseThread.thread_id == Message.thread_id, CaseThread.unlinked_at.is_(None)
        )
    )
    rows = session.execute(
        select(Message.id, Message.thread_id, Message.flags)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(
            Account.name == account,
            contains_ignoring_case(
                Message.flags, keyword, like_ignores_ascii_case=_is_sqlite(session)
            ),
            or_(
                contains_ignoring_case(" " + Message.flags, " " + keyword + "_"),
                and_(_has_word(Message.flags, keyword), unlinked_thread),
            ),
        )
        .order_by(Message.id)
    )
    return [
        FlaggedMessage(row_id, thread_id, tuple(flags.split())) for row_id, thread_id, flags in rows
    ]


def thread_subjects(session: Session, thread_ids: Iterable[str]) -> dict[str, list[str]]:
    """Every subject in these threads (all accounts), by thread id."""
    found: dict[str, list[str]] = {}
    for chunk in _chunks(thread_ids):
        rows = session.execute(
            select(Message.thread_id, Message.subject).where(Message.thread_id.in_(chunk))
        )
        for thread_id, subject in rows:
            if thread_id is not None:
                found.setdefault(thread_id, []).append(subject)
    return found


def thread_sizes(session: Session, thread_ids: Iterable[str]) -> dict[str, int]:
    """How many indexed messages (all accounts) each of these threads holds."""
    sizes: dict[str, int] = {}
    for chunk in _chunks(thread_ids):
        rows = session.execute(
            select(Message.thread_id, func.count())
            .where(Message.thread_id.in_(chunk))
            .group_by(Message.thread_id)
        )
        sizes.update((str(row[0]), int(row[1])) for row in rows)
    return sizes


def large_linked_threads(session: Session, limit: int) -> dict[str, int]:
    """Actively linked threads holding more than ``limit`` messages, with their size."""
    linked = (
        select(CaseThread.thread_id).where(CaseThread.unlinked_at.is_(None)).distinct().subquery()
    )
    rows = session.execute(
        select(Message.thread_id, func.count())
        .join(linked, linked.c.thread_id == Message.thread_id)
        .group_by(Message.thread_id)
        .having(func.count() > limit)
    )
    return {str(row[0]): int(row[1]) for row in rows}


def mail_after_closing(session: Session) -> dict[tuple[str, str], list[int]]:
    """``(thread, ref) → message rows`` received after that closed case was closed, for
    threads no open case holds: a customer writing again about a closed complaint."""
    open_link = exists(
        select(CaseThread.id)
        .join(Case, Case.id == CaseThread.case_id)
        .where(
            CaseThread.thread_id == Message.thread_id,
            CaseThread.unlinked_at.is_(None),
            Case.status == "open",
        )
    )
    rows = session.execute(
        select(Message.thread_id, Case.ref, Message.id)
        .join(CaseThread, CaseThread.thread_id == Message.thread_id)
        .join(Case, Case.id == CaseThread.case_id)
        .where(
            CaseThread.unlinked_at.is_(None),
            Case.status == "closed",
            Message.internal_date > Case.closed_at,
            ~open_link,
        )
        .order_by(Message.id)
    )
    found: dict[tuple[str, str], list[int]] = {}
    for thread_id, ref, row_id in rows:
        found.setdefault((str(thread_id), ref), []).append(row_id)
    return found


def named_after_unlink(session: Session) -> dict[tuple[str, str], list[int]]:
    """``(thread, ref) → message rows`` indexed after a person unlinked the thread from
    that case (and nobody linked it again) whose subject names the case."""
    relinked = aliased(CaseThread)
    rows = session.execute(
        select(CaseThread.thread_id, Case.ref, Message.id, Message.subject)
        .join(Case, Case.id == CaseThread.case_id)
        .join(Message, Message.thread_id == CaseThread.thread_id)
        .where(
            CaseThread.unlinked_at.is_not(None),
            Message.indexed_at > CaseThread.unlinked_at,
            ~exists(
                select(relinked.id).where(
                    relinked.thread_id == CaseThread.thread_id,
                    relinked.case_id == CaseThread.case_id,
                    relinked.unlinked_at.is_(None),
                )
            ),
        )
        .order_by(Message.id)
    )
    found: dict[tuple[str, str], list[int]] = {}
    for thread_id, ref, row_id, subject in rows:
        if ref.casefold() in subject.casefold():
            found.setdefault((str(thread_id), ref), []).append(row_id)
    return found


def threads_mentioning(session: Session, text: str) -> dict[str, list[str]]:
    """Threads with a message whose subject contains ``text`` (case-insensitive)."""
    rows = session.execute(
        select(Message.thread_id, Message.subject).where(
            Message.thread_id.is_not(None), contains_ignoring_case(Message.subject, text)
        )
    )
    found: dict[str, list[str]] = {}
    for thread_id, subject in rows:
        if thread_id is not None:
            found.setdefault(thread_id, []).append(subject)
    return found


def open_case_keywords_lacking(
    session: Session, account: str, prefix: str
) -> list[tuple[ServerMessage, str]]:
    """Messages of the account's threads linked to an open case, each with the per-case
    keyword (``prefix`` + case ref) it lacks — one pair per missing keyword.

    Keywords are compared as whole flags, case-insensitively (RFC 3501 keywords are
    atoms; clients may change their case). A case ref that cannot be a keyword is
    skipped (it cannot be mirrored). The linked threads are read first and their
    messages found through ``ix_messages_thread_id``: a join lets SQLite walk the whole
    account instead.
    """
    keywords_by_thread: dict[str, list[str]] = {}
    for thread_id, ref in session.execute(
        select(CaseThread.thread_id, Case.ref)
        .join(Case, Case.id == CaseThread.case_id)
        .where(CaseThread.unlinked_at.is_(None), Case.status == "open")
        .distinct()
    ):
        try:
            keyword = keyword_for_case(ref, prefix)
        except InputError:
            continue
        keywords_by_thread.setdefault(thread_id, []).append(keyword)
    found: list[tuple[ServerMessage, str]] = []
    for chunk in _chunks(keywords_by_thread):
        statement = _server_messages(account).where(Message.thread_id.in_(chunk))
        for values in session.execute(statement):
            message = _server_message(values)
            present = {flag.casefold() for flag in message.flags}
            found.extend(
                (message, keyword)
                for keyword in sorted(keywords_by_thread[message.thread_id])
                if keyword.casefold() not in present
            )
    return found


def messages_in_threads(
    session: Session, thread_ids: Iterable[str], *, account: str | None = None
) -> list[ServerMessage]:
    """Messages of these threads (optionally of one account only), with server identity."""
    found: list[ServerMessage] = []
    for chunk in _chunks(thread_ids):
        statement = _server_messages(account).where(Message.thread_id.in_(chunk))
        found.extend(_server_message(values) for values in session.execute(statement))
    return found


def set_flags(session: Session, flags_by_row: dict[int, str]) -> None:
    """Record flags the server now has (after we stored a keyword)."""
    for row_id, flags in flags_by_row.items():
        session.execute(
            update(Message).where(Message.id == row_id).values(flags=flags),
            execution_options={"synchronize_session": False},
        )


def case_messages(session: Session, thread_ids: Iterable[str]) -> list[CaseMessage]:
    """Every indexed message of these threads, all accounts and folders, oldest first."""
    found: list[CaseMessage] = []
    for chunk in _chunks(thread_ids):
        rows = session.execute(
            select(
                Message.id,
                Account.name,
                Folder.name,
                Message.uid,
                Message.thread_id,
                Message.message_id,
                Message.subject,
                Message.from_addr,
                Message.date_header,
                Message.internal_date,
                Message.flags,
            )
            .join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Folder.account_id)
            .where(Message.thread_id.in_(chunk))
        )
        for (
            row_id,
            account,
            folder,
            uid,
            thread,
            msgid,
            subject,
            sender,
            date,
            received,
            flags,
        ) in rows:
            found.append(
                CaseMessage(
                    row_id,
                    account,
                    folder,
                    uid,
                    thread or "",
                    msgid,
                    subject,
                    sender,
                    date,
                    received,
                    tuple(flags.split()),
                )
            )
    found.sort(key=_sort_key)
    return found


def message_threads_by_message_id(
    session: Session, message_id: str
) -> list[tuple[int, str | None]]:
    """``(row id, thread id)`` of every copy of the message with this Message-ID."""
    rows = session.execute(
        select(Message.id, Message.thread_id).where(Message.message_id == message_id)
    )
    return [(row_id, thread_id) for row_id, thread_id in rows]


def message_thread_by_row(session: Session, row_id: int) -> tuple[int, str | None] | None:
    row = session.execute(select(Message.id, Message.thread_id).where(Message.id == row_id)).first()
    return None if row is None else (row[0], row[1])


def threads_of_rows(session: Session, row_ids: Iterable[int]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for chunk in _chunks(row_ids):
        rows = session.execute(select(Message.id, Message.thread_id).where(Message.id.in_(chunk)))
        found.update((row[0], row[1]) for row in rows)
    return found


def accounts_of_rows(session: Session, row_ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(row_ids):
        rows = session.execute(
            select(Message.id, Account.name)
            .join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Folder.account_id)
            .where(Message.id.in_(chunk))
        )
        found.update((row[0], row[1]) for row in rows)
    return found


# -- helpers ---------------------------------------------------------------------------


def _has_word(column: Any, word: str) -> ColumnElement[bool]:
    """``word`` is one of the space-separated words of ``column`` (case-insensitive)."""
    escaped = word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    clause: ColumnElement[bool] = (" " + column + " ").ilike(f"% {escaped} %", escape="\\")
    return clause


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def contains_ignoring_case(
    column: Any, text: str, *, like_ignores_ascii_case: bool = False
) -> ColumnElement[bool]:
    """``column`` contains ``text``, case-insensitively.

    An ASCII ``text`` lower-cases the same here as in the database, so it is compared
    lower-cased: with plain ``LIKE`` where ``like_ignores_ascii_case`` (SQLite's does);
    otherwise with ``lower(x) LIKE``, where PostgreSQL's ``ILIKE`` would lower-case the
    pattern again for every row (three times the cost of ``lower``: the keyword scan
    over every message is part of each plan and each run).
    """
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    clause: ColumnElement[bool]
    if text.isascii():
        compared = column if like_ignores_ascii_case else func.lower(column)
        clause = compared.like(f"%{escaped}%", escape="\\")
        return clause
    clause = column.ilike(f"%{escaped}%", escape="\\")
    return clause


def _server_messages(account: str | None) -> Any:
    statement = (
        select(
            Message.id,
            Account.name,
            Folder.id,
            Folder.name,
            Folder.uidvalidity,
            Message.uid,
            Message.thread_id,
            Message.flags,
        )
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .order_by(Folder.name, Message.uid)
    )
    if account is not None:
        statement = statement.where(Account.name == account)
    return statement


def _server_message(values: Sequence[object]) -> ServerMessage:
    row_id, account, folder_id, folder, uidvalidity, uid, thread_id, flags = values
    return ServerMessage(
        row_id=int(row_id),  # type: ignore[call-overload]
        account=str(account),
        folder_id=int(folder_id),  # type: ignore[call-overload]
        folder=str(folder),
        uidvalidity=None if uidvalidity is None else int(uidvalidity),  # type: ignore[call-overload]
        uid=int(uid),  # type: ignore[call-overload]
        thread_id=str(thread_id),
        flags=tuple(str(flags).split()),
    )


def _sort_key(message: CaseMessage) -> tuple[str, int]:
    when = message.internal_date or message.date
    return (when.isoformat() if when else "9999", message.row_id)


def _chunks(values: Iterable[_T]) -> Iterator[list[_T]]:
    ordered = sorted(set(values), key=str)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


__all__ = [
    "CaseCounts",
    "CaseMessage",
    "CaseRef",
    "FlaggedMessage",
    "LinkRow",
    "ServerMessage",
    "account_names",
    "active_links",
    "add_case",
    "add_link",
    "case_links",
    "case_messages",
    "find_case",
    "flagged_messages",
    "get_case",
    "get_case_by_id",
    "insert_case",
    "insert_link",
    "large_linked_threads",
    "list_cases",
    "mail_after_closing",
    "message_thread_by_row",
    "message_threads_by_message_id",
    "messages_in_threads",
    "move_links",
    "named_after_unlink",
    "open_case_keywords_lacking",
    "refs_starting",
    "rename_case",
    "repoint_links",
    "set_flags",
    "thread_sizes",
    "thread_subjects",
    "threads_mentioning",
    "threads_of_rows",
    "unlink",
    "unlinked_pairs",
]
