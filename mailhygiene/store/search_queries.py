"""Translate a parsed search ``Query`` into SQL — with bound parameters only.

The query parser (``mailhygiene/query.py``) never builds SQL; this module maps each
term to a SQLAlchemy expression, so user text can never change the statement's shape.
Dates follow IMAP SEARCH (RFC 3501 §6.4.4): ``before:D`` is received before the start
of day D, ``after:D`` (SINCE) on or after the start of day D, both in the policy zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from mailhygiene.query import Query, Term, day_start
from mailhygiene.store import restriction_queries
from mailhygiene.store.models import Account, Case, CaseThread, Folder, Message

_ROWS = 5000


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(column: Any, value: str) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], column.ilike(_like(value.lower()), escape="\\"))


def _word(column: Any, value: str) -> ColumnElement[bool]:
    """``value`` as one whole space-separated word of ``column`` (addresses, flags)."""
    value = value.lower()
    padded = " " + column + " "
    return cast(ColumnElement[bool], padded.ilike(_like(f" {value} "), escape="\\"))


def _address(column: Any, value: str) -> ColumnElement[bool]:
    value = value.lower()
    if value.startswith("@") or "@" not in value:
        return _contains(column, value)
    return _word(column, value)


def term_clause(term: Term, zone: ZoneInfo) -> ColumnElement[bool]:
    field, value = term.field, term.value
    clause: ColumnElement[bool]
    if field == "from":
        clause = _address(Message.from_addr, str(value))
    elif field == "to":
        clause = _address(Message.to_addrs, str(value))
    elif field == "cc":
        clause = _address(Message.cc_addrs, str(value))
    elif field == "addr":
        clause = or_(
            *(
                _address(c, str(value))
                for c in (Message.from_addr, Message.to_addrs, Message.cc_addrs, Message.reply_to)
            )
        )
    elif field == "subject":
        clause = _contains(Message.subject, str(value))
    elif field == "folder":
        # RFC 3501 §5.1: INBOX is case-insensitive, every other name is exact.
        name = str(value)
        clause = (
            func.upper(Folder.name) == "INBOX" if name.upper() == "INBOX" else Folder.name == name
        )
    elif field == "account":
        clause = Account.name == str(value)
    elif field == "keyword":
        clause = _word(Message.flags, str(value))
    elif field == "msgid":
        clause = Message.message_id == str(value).strip("<>").lower()
    elif field == "thread":
        clause = Message.thread_id == str(value)
    elif field == "case":
        clause = exists(
            select(CaseThread.id)
            .join(Case, Case.id == CaseThread.case_id)
            .where(
                CaseThread.thread_id == Message.thread_id,
                CaseThread.unlinked_at.is_(None),
                Case.ref == str(value).upper(),
            )
        )
    elif field in ("before", "after", "on"):
        assert isinstance(value, date)
        start = day_start(value, zone)
        if field == "before":
            clause = Message.internal_date < start
        elif field == "after":
            clause = Message.internal_date >= start
        else:
            clause = and_(
                Message.internal_date >= start,
                Message.internal_date < day_start(value + timedelta(days=1), zone),
            )
    elif field == "larger":
        clause = Message.size > int(value)  # type: ignore[arg-type]
    elif field == "smaller":
        clause = Message.size < int(value)  # type: ignore[arg-type]
    elif field in ("text", "", None):
        text = str(value)
        clause = or_(
            _contains(Message.subject, text),
            _contains(Message.from_addr, text),
            _contains(Message.to_addrs, text),
        )
    else:
        # why: an unknown field must never widen a search (holds and erasure depend on it)
        clause = false()
    return not_(clause) if term.negated else clause


def query_clause(query: Query, zone: ZoneInfo) -> ColumnElement[bool]:
    if not query.terms:
        return true()
    return and_(*(term_clause(term, zone) for term in query.terms))


def _base(
    session: Session, query: Query, zone: ZoneInfo, account: str | None, hide_restricted: bool
) -> Any:
    statement = (
        select(Message.id)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(query_clause(query, zone))
    )
    return _narrowed(session, statement, account, hide_restricted)


def _narrowed(session: Session, statement: Any, account: str | None, hide_restricted: bool) -> Any:
    if account is not None:
        statement = statement.where(Account.name == account)
    if hide_restricted and (hidden := restriction_queries.hidden_clause(session)) is not None:
        statement = statement.where(not_(hidden))
    return statement


def matching_rows(
    session: Session,
    query: Query,
    *,
    zone: ZoneInfo,
    account: str | None = None,
    hide_restricted: bool = False,
) -> Iterator[int]:
    """Row ids of every indexed message matching ``query`` (holds and erasure use this:
    restricted mail is hidden only when asked)."""
    statement = _base(session, query, zone, account, hide_restricted)
    result = session.execute(statement.execution_options(yield_per=_ROWS))
    for (row_id,) in result:
        yield row_id


def count_matching(
    session: Session,
    query: Query,
    *,
    zone: ZoneInfo,
    account: str | None = None,
    hide_restricted: bool = False,
) -> int:
    subquery = _base(session, query, zone, account, hide_restricted).subquery()
    return int(session.scalar(select(func.count()).select_from(subquery)) or 0)


def search_messages(
    session: Session,
    query: Query,
    *,
    zone: ZoneInfo,
    account: str | None,
    limit: int,
    offset: int = 0,
    hide_restricted: bool = False,
) -> list[dict[str, Any]]:
    """A page of matching messages, newest first, as plain rows for display."""
    statement = (
        select(
            Message.id,
            Account.name,
            Folder.name,
            Message.uid,
            Message.internal_date,
            Message.from_addr,
            Message.to_addrs,
            Message.subject,
            Message.size,
            Message.flags,
            Message.message_id,
            Message.thread_id,
            Message.problems,
        )
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(query_clause(query, zone))
        .order_by(Message.internal_date.desc(), Message.id.desc())
        .limit(limit)
        .offset(offset)
    )
    statement = _narrowed(session, statement, account, hide_restricted)
    keys = (
        "id",
        "account",
        "folder",
        "uid",
        "internal_date",
        "from",
        "to",
        "subject",
        "size",
        "flags",
        "message_id",
        "thread_id",
        "problems",
    )
    return [dict(zip(keys, row, strict=True)) for row in session.execute(statement)]


def rows_by_id(
    session: Session,
    row_ids: list[int],
    *,
    account: str | None = None,
    hide_restricted: bool = False,
) -> list[int]:
    """The given row ids that exist (in ``account``, when given)."""
    statement = (
        select(Message.id)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(Message.id.in_(row_ids))
    )
    return list(session.scalars(_narrowed(session, statement, account, hide_restricted)))
