"""Load what ``policy.decide`` needs from the index: messages with their cases and holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailhygiene.errors import NotFoundError
from mailhygiene.policy import CaseLink, MessageFacts
from mailhygiene.store.models import Account, Case, CaseThread, Folder, Message
from mailhygiene.store.session import among

_ROWS_PER_FETCH = 5000


@dataclass(frozen=True, slots=True)
class IndexedRow:
    """A message's server identity next to its policy facts."""

    message_row: int
    folder_id: int
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    thread_id: str | None
    flags: str  # as stored: the IMAP flags and keywords, space-separated
    facts: MessageFacts


def case_links_by_thread(session: Session) -> dict[str, tuple[CaseLink, ...]]:
    """Every active case link, keyed by thread id."""
    links: dict[str, list[CaseLink]] = {}
    rows = session.execute(
        select(CaseThread.thread_id, Case.ref, Case.status, Case.closed_at)
        .join(Case, Case.id == CaseThread.case_id)
        .where(CaseThread.unlinked_at.is_(None))
    )
    for thread_id, ref, status, closed_at in rows:
        links.setdefault(thread_id, []).append(
            CaseLink(ref=ref, is_open=status == "open", closed_at=closed_at)
        )
    return {thread: tuple(items) for thread, items in links.items()}


HoldLookup = Callable[[int], tuple[str, ...]]


class _StoredHeaders(Mapping[str, str]):
    """The extra headers stored as JSON, decoded only when a rule asks for one.

    Most policies match on folder, sender and subject; decoding every message's headers
    while planning would cost more than deciding about it.
    """

    __slots__ = ("_decoded", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._decoded: dict[str, str] | None = None

    def _headers(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = json.loads(self._text)
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._headers()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._headers()

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def __repr__(self) -> str:
        return repr(self._headers())


_NO_HEADERS: Mapping[str, str] = {}

_INDEXED = (
    "SELECT m.id, m.folder_id, f.name, f.uidvalidity, m.uid, m.message_id, m.thread_id, "
    "m.internal_date, m.date_header, m.size, m.from_addr, m.to_addrs, m.cc_addrs, m.subject, "
    "m.extra_headers, m.flags "
    "FROM messages m JOIN folders f ON f.id = m.folder_id "
    "JOIN accounts a ON a.id = f.account_id WHERE a.name = {marker}{narrowed} ORDER BY m.id"
)


def iter_indexed(
    session: Session,
    *,
    account: str,
    holds_for: HoldLookup,
    exclude_folders: Sequence[str] = (),
    only_folders: Sequence[str] = (),
    message_rows: Collection[int] | None = None,
    cases: Mapping[str, tuple[CaseLink, ...]] | None = None,
) -> Iterator[IndexedRow]:
    """Stream the account's indexed messages (``message_rows`` only, when given) as
    ``IndexedRow`` (policy facts included), in row order.

    One statement in the driver's SQL, without SQLAlchemy's per-value processing (the
    dates are made aware here): it cost more than building the facts (``purge execute``
    reads the facts of every message it moves again, while the server moves the batch
    before).
    """
    if cases is None:
        cases = case_links_by_thread(session)
    session.flush()
    sqlite = session.get_bind().dialect.name == "sqlite"
    marker = "?" if sqlite else "%s"
    narrowed = ""
    parameters: list[Any] = [account]
    for column, values, negate in (
        ("f.name", exclude_folders or None, True),
        ("f.name", only_folders or None, False),
        ("m.id", message_rows, False),  # none given: no message
    ):
        if values is None:
            continue
        condition, listed = among(sqlite, list(values), negate=negate)
        narrowed += f" AND {column} {condition}"
        parameters.append(listed)
    # why: a whole account may be a million rows: on PostgreSQL a server-side cursor
    # fetches them in parts
    whole = message_rows is None or len(message_rows) > _ROWS_PER_FETCH
    result = session.connection().exec_driver_sql(
        _INDEXED.format(marker=marker, narrowed=narrowed),
        tuple(parameters),
        execution_options={"stream_results": whole},
    )
    with result:
        while rows := result.fetchmany(_ROWS_PER_FETCH):
            for row in rows:
                yield _indexed_row(row, account, cases, holds_for)


_NO_CASES: tuple[CaseLink, ...] = ()


def _instant(value: datetime | str | None) -> datetime | None:
    """A stored ``UTCDateTime`` as the driver returns it (SQLite: text; PostgreSQL: naive
    UTC), made aware as SQLAlchemy would."""
    if value is None:
        return None
    if value.__class__ is str:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return cast(datetime, value).replace(tzinfo=UTC)


def _indexed_row(
    row: Sequence[Any],
    account: str,
    cases: Mapping[str, tuple[CaseLink, ...]],
    holds_for: HoldLookup,
) -> IndexedRow:
    (
        row_id,
        folder_id,
        folder,
        uidvalidity,
        uid,
        message_id,
        thread_id,
        internal_date,
        date_header,
        size,
        from_addr,
        to_addrs,
        cc_addrs,
        subject,
        extra,
        flags,
    ) = row
    facts = MessageFacts(
        message_key=row_id,
        account=account,
        folder=folder,
        internal_date=_instant(internal_date),
        date_header=_instant(date_header),
        size=size,
        from_addr=from_addr,
        to_addrs=tuple(to_addrs.split()),
        cc_addrs=tuple(cc_addrs.split()),
        subject=subject,
        headers=_StoredHeaders(extra) if extra and extra != "{}" else _NO_HEADERS,
        keywords=frozenset(flags.split()),
        cases=cases.get(thread_id, _NO_CASES) if thread_id else _NO_CASES,
        holds=holds_for(row_id),
    )
    return IndexedRow(
        message_row=row_id,
        folder_id=folder_id,
        folder=folder,
        uidvalidity=uidvalidity or 0,
        uid=uid,
        message_id=message_id,
        thread_id=thread_id,
        flags=flags,
        facts=facts,
    )


def account_of(session: Session, row_id: int) -> str:
    name = session.scalar(
        select(Account.name)
        .join(Folder, Folder.account_id == Account.id)
        .join(Message, Message.folder_id == Folder.id)
        .where(Message.id == row_id)
    )
    if name is None:
        raise NotFoundError(f"no indexed message with id {row_id}")
    return name
