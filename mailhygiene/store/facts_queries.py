"""Load what ``policy.decide`` needs from the index: messages with their cases and holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mailhygiene.errors import NotFoundError
from mailhygiene.policy import CaseLink, MessageFacts
from mailhygiene.store.models import Account, Case, CaseThread, Folder, Message

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


def indexed_select(account: str) -> Select[*tuple[Any, ...]]:
    """The account's messages with every column ``indexed_rows`` reads, in row order."""
    return (
        select(
            Message.id,
            Message.folder_id,
            Folder.name,
            Folder.uidvalidity,
            Message.uid,
            Message.message_id,
            Message.thread_id,
            Message.internal_date,
            Message.date_header,
            Message.size,
            Message.from_addr,
            Message.to_addrs,
            Message.cc_addrs,
            Message.subject,
            Message.extra_headers,
            Message.flags,
        )
        .join(Folder, Folder.id == Message.folder_id)
        .join(Account, Account.id == Folder.account_id)
        .where(Account.name == account)
        .order_by(Message.id)
    )


def iter_indexed(
    session: Session,
    *,
    account: str,
    holds_for: HoldLookup,
    exclude_folders: Sequence[str] = (),
    only_folders: Sequence[str] = (),
    message_rows: Sequence[int] | None = None,
    cases: Mapping[str, tuple[CaseLink, ...]] | None = None,
) -> Iterator[IndexedRow]:
    """Stream the account's indexed messages as ``IndexedRow`` (policy facts included)."""
    if cases is None:
        cases = case_links_by_thread(session)
    query = indexed_select(account)
    if exclude_folders:
        query = query.where(Folder.name.not_in(list(exclude_folders)))
    if only_folders:
        query = query.where(Folder.name.in_(list(only_folders)))
    if message_rows is not None:
        chunks = [list(message_rows[i : i + 500]) for i in range(0, len(message_rows), 500)]
        queries = [query.where(Message.id.in_(chunk)) for chunk in chunks]
    else:
        queries = [query]
    for one_query in queries:
        yield from indexed_rows(
            session, one_query, account=account, cases=cases, holds_for=holds_for
        )


def indexed_rows(
    session: Session,
    query: Select[*tuple[Any, ...]],
    *,
    account: str,
    cases: Mapping[str, tuple[CaseLink, ...]],
    holds_for: HoldLookup,
) -> Iterator[IndexedRow]:
    """Run ``query`` (``indexed_select``, narrowed by the caller) as ``IndexedRow``s."""
    no_cases: tuple[CaseLink, ...] = ()
    session.flush()
    # why: Core rows on the session's connection, not ORM rows: the ORM's per-row
    # loading costs more than deciding about the message (``scripts/bench.py``).
    result = session.connection().execute(query.execution_options(yield_per=_ROWS_PER_FETCH))
    for row in result:
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
            internal_date=internal_date,
            date_header=date_header,
            size=size,
            from_addr=from_addr,
            to_addrs=tuple(to_addrs.split()),
            cc_addrs=tuple(cc_addrs.split()),
            subject=subject,
            headers=_StoredHeaders(extra) if extra and extra != "{}" else _NO_HEADERS,
            keywords=frozenset(flags.split()),
            cases=cases.get(thread_id, no_cases) if thread_id else no_cases,
            holds=holds_for(row_id),
        )
        yield IndexedRow(
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
