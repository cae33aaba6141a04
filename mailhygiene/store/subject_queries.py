"""SQL for data-subject requests: finding a person's mail, and the request records.

Address and text searches here are *prefilters* with bound parameters: they return
every row that could match, and ``subjects`` decides exactly which do (so a ``LIKE``
that spans two addresses, or SQLite's ASCII-only case folding, can never widen or
narrow what is found).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from mailhygiene.store.models import (
    Account,
    Folder,
    Message,
    Plan,
    QuarantineEntry,
    SubjectRequest,
)

_ROWS = 5000
_CHUNK = 500
_ADDRESS_COLUMNS = (Message.from_addr, Message.to_addrs, Message.cc_addrs, Message.reply_to)


@dataclass(frozen=True, slots=True)
class AddressRow:
    """One candidate message and its address headers, as the index stores them."""

    row_id: int
    account: str
    from_addr: str
    to_addrs: str
    cc_addrs: str
    reply_to: str


@dataclass(frozen=True, slots=True)
class TextRow:
    row_id: int
    account: str
    subject: str
    from_name: str


@dataclass(frozen=True, slots=True)
class IndexedFolder:
    id: int
    account: str
    name: str
    uidvalidity: int | None


@dataclass(frozen=True, slots=True)
class PlanState:
    id: int
    ref: str
    status: str
    expires_at: datetime
    finished_at: datetime | None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _padded_like(column: Any, pattern: str) -> ColumnElement[bool]:
    padded = " " + column + " "
    return cast(ColumnElement[bool], padded.ilike(pattern, escape="\\"))


def address_clause(
    addresses: Sequence[str], plus_of: Sequence[tuple[str, str]] = ()
) -> ColumnElement[bool] | None:
    """Any address header holds one of ``addresses`` as a whole word, or an address
    ``local+…@domain`` for a ``(local, domain)`` of ``plus_of``; None when both are empty.

    A prefilter: a ``LIKE`` may also match across two neighbouring addresses."""
    patterns = [f"% {_escape(a.lower())} %" for a in addresses]
    patterns += [
        f"% {_escape(local.lower())}+%@{_escape(domain.lower())} %" for local, domain in plus_of
    ]
    if not patterns:
        return None
    return or_(*(_padded_like(c, p) for c in _ADDRESS_COLUMNS for p in patterns))


def address_candidates(
    session: Session, *, addresses: Sequence[str], plus_of: Sequence[tuple[str, str]] = ()
) -> Iterator[AddressRow]:
    """Rows where any address header holds one of ``addresses`` as a whole word, or (for
    plus-addressing) an address ``local+…@domain`` for a ``(local, domain)`` of ``plus_of``."""
    clause = address_clause(addresses, plus_of)
    if clause is None:
        return
    statement = (
        select(
            Message.id,
            Account.name,
            Message.from_addr,
            Message.to_addrs,
            Message.cc_addrs,
            Message.reply_to,
        )
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(clause)
        .order_by(Message.id)
    )
    for row in session.execute(statement.execution_options(yield_per=_ROWS)):
        yield AddressRow(*row)


def text_candidates(session: Session, *, fragments: Sequence[str]) -> Iterator[TextRow]:
    """Rows whose subject or sender name contains any of ``fragments`` (ASCII case-folded);
    every row when ``fragments`` is empty (the caller then checks them all)."""
    statement = (
        select(Message.id, Account.name, Message.subject, Message.from_name)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .order_by(Message.id)
    )
    if fragments:
        likes = [f"%{_escape(f)}%" for f in fragments]
        statement = statement.where(
            or_(
                *(
                    column.ilike(like, escape="\\")
                    for column in (Message.subject, Message.from_name)
                    for like in likes
                )
            )
        )
    for row in session.execute(statement.execution_options(yield_per=_ROWS)):
        yield TextRow(*row)


def indexed_folders(session: Session, *, account: str | None = None) -> list[IndexedFolder]:
    statement = (
        select(Folder.id, Account.name, Folder.name, Folder.uidvalidity)
        .join(Account, Account.id == Folder.account_id)
        .order_by(Account.name, Folder.name)
    )
    if account is not None:
        statement = statement.where(Account.name == account)
    return [IndexedFolder(*row) for row in session.execute(statement)]


def rows_for_uids(session: Session, folder_id: int, uids: Sequence[int]) -> dict[int, int]:
    """UID → index row id for the ``uids`` of one folder that are indexed."""
    found: dict[int, int] = {}
    for start in range(0, len(uids), _CHUNK):
        chunk = list(uids[start : start + _CHUNK])
        statement = select(Message.uid, Message.id).where(
            Message.folder_id == folder_id, Message.uid.in_(chunk)
        )
        for uid, row_id in session.execute(statement):
            found[uid] = row_id
    return found


def quarantine_deadlines(
    session: Session, *, account: str, message_ids: Iterable[str]
) -> dict[str, datetime]:
    """Message-ID → when it is deleted for good, for mail waiting in the quarantine."""
    wanted = sorted(set(message_ids))
    found: dict[str, datetime] = {}
    for start in range(0, len(wanted), _CHUNK):
        statement = select(QuarantineEntry.message_id, QuarantineEntry.purge_after).where(
            QuarantineEntry.account == account,
            QuarantineEntry.state == "held",
            QuarantineEntry.message_id.in_(wanted[start : start + _CHUNK]),
        )
        for message_id, purge_after in session.execute(statement):
            found[message_id] = purge_after
    return found


# -- request records ------------------------------------------------------------------


def add_request(session: Session, request: SubjectRequest) -> SubjectRequest:
    session.add(request)
    session.flush()
    return request


def get_request(session: Session, ref: str) -> SubjectRequest | None:
    return session.scalar(select(SubjectRequest).where(SubjectRequest.ref == ref))


def earliest_due(session: Session, *, email: str, request_ref: str) -> datetime | None:
    """The deadline already running for this person's request ``request_ref``, if any."""
    if not request_ref:
        return None
    return session.scalar(
        select(SubjectRequest.due_at)
        .where(SubjectRequest.email == email, SubjectRequest.request_ref == request_ref)
        .order_by(SubjectRequest.due_at)
        .limit(1)
    )


def open_erasures(session: Session, *, email: str, request_ref: str) -> list[SubjectRequest]:
    return list(
        session.scalars(
            select(SubjectRequest).where(
                SubjectRequest.email == email,
                SubjectRequest.request_ref == request_ref,
                SubjectRequest.kind == "erase",
                SubjectRequest.status == "open",
            )
        )
    )


def list_requests(session: Session, *, include_closed: bool = False) -> list[SubjectRequest]:
    statement = select(SubjectRequest).order_by(SubjectRequest.due_at, SubjectRequest.id)
    if not include_closed:
        statement = statement.where(SubjectRequest.status == "open")
    return list(session.scalars(statement))


def plan_states(session: Session, refs: Iterable[str]) -> dict[str, PlanState]:
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    statement = select(Plan.id, Plan.ref, Plan.status, Plan.expires_at, Plan.finished_at).where(
        Plan.ref.in_(wanted)
    )
    return {row[1]: PlanState(*row) for row in session.execute(statement)}
