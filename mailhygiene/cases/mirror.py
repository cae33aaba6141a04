"""Mirror case links to the server as per-case keywords, so staff see what is protected.

The database is the source of truth; the server's keyword is a copy for people.
``mirror_keywords`` sets the per-case keyword ``policy.case_keyword + "_" + REF``
(``$Reklamation_REK-2025-0042``) on every message (every folder) of every thread linked
to an *open* case that the index says lacks it: per folder and keyword one ``SELECT``,
one ``UID STORE +FLAGS.SILENT`` and one ``UID FETCH FLAGS`` to record what the server
really kept. Nothing is remembered between runs except the flags themselves, so an
unreachable server (or a crash) only delays the copy: the next run finds the same
messages still lacking the keyword and sets it then.

**Why the per-case keyword, not the plain one.** The plain keyword (``$Reklamation``)
is a person's mark: ``policy.decide`` keeps a message that carries it for as long as it
is there, even on a thread whose cases are closed (staff may have marked a late reply).
Mirrored onto every linked message it would keep a closed case's mail forever. A
per-case keyword keeps nothing by itself once its case is linked — the case's own
period decides — and it tells staff in their client *which* case protects the mail.

**Closing a case does not remove the keyword.** The mail stays protected for
``case_keep_after_close`` after closing, so the mark in the client stays truthful; a
reopened case needs no re-marking; and removing it would race staff who mark the same
thread again.

**Unlinking removes it** (:func:`remove_case_keywords`, called by ``untag`` before the
link ends): the keyword was ours, and left in place on a thread no longer linked to
its case it would keep the mail (``policy.decide`` keeps a message marked for a case
its thread is not linked to) and look like a fresh client mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mailhygiene.errors import ConnectError, FolderError, ImapError
from mailhygiene.mailbox import FlagUpdate, FolderStatus
from mailhygiene.policy import Policy
from mailhygiene.store import case_queries as cq
from mailhygiene.store.session import Store


class KeywordServer(Protocol):
    """What mirroring needs of a mail server (``ImapMailServer`` is the real one)."""

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus: ...

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> set[int]: ...

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None: ...

    def fetch_flags(
        self,
        uids: Sequence[int] | None = None,
        *,
        changed_since: int | None = None,
        below_uid: int | None = None,
    ) -> list[FlagUpdate]: ...


ServerFor = Callable[[str], AbstractContextManager[KeywordServer]]
"""Opens a connected server for an account name (the CLI passes ``app(ctx).server``)."""


@dataclass
class FolderMirror:
    folder: str
    wanted: int
    keyword: str = ""
    marked: int = 0
    problem: str = ""


@dataclass
class MirrorResult:
    """What one mirroring run did; ``pending`` messages are retried next time."""

    account: str
    keyword: str
    marked: int = 0
    pending: int = 0
    folders: list[FolderMirror] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.pending == 0


def mirror_keywords(
    store: Store,
    server: KeywordServer,
    policy: Policy,
    account: str,
    *,
    now: datetime,
    actor: str,
) -> MirrorResult:
    """Set the per-case keywords the account's linked messages lack; see the module.

    ``now`` and ``actor`` are accepted for symmetry with the other services (the flags
    written are the server's own record; nothing here is audited as a case change).
    """
    del now, actor
    prefix = case_keyword_prefix(policy)
    result = MirrorResult(account=account, keyword=prefix + "<case>")
    with store.transaction() as session:
        lacking = cq.open_case_keywords_lacking(session, account, prefix)
    by_keyword: dict[str, list[cq.ServerMessage]] = {}
    for message, keyword in lacking:
        by_keyword.setdefault(keyword, []).append(message)
    connection_lost = False
    for keyword, messages in sorted(by_keyword.items()):
        for (folder, uidvalidity), folder_messages in _by_folder(messages):
            outcome = FolderMirror(folder, wanted=len(folder_messages), keyword=keyword)
            result.folders.append(outcome)
            if connection_lost:
                outcome.problem = "not tried: the connection was lost"
                continue
            try:
                _mirror_folder(
                    store, server, keyword, folder, uidvalidity, folder_messages, outcome
                )
            except ConnectError as error:
                # why: the connection is gone; later folders would fail the same way
                outcome.problem = str(error)
                connection_lost = True
            except (FolderError, ImapError) as error:
                outcome.problem = str(error)
    result.marked = sum(f.marked for f in result.folders)
    result.pending = len(lacking) - result.marked
    return result


def case_keyword_prefix(policy: Policy) -> str:
    """What per-case keywords start with: the case keyword and an underscore."""
    return policy.case_keyword + "_"


def remove_case_keywords(
    store: Store,
    server_for: ServerFor,
    messages: Sequence[cq.ServerMessage],
    keywords_by_thread: dict[str, tuple[str, ...]],
) -> int:
    """Remove ``keywords_by_thread[thread]`` from these messages on their servers.

    Records the flags the server has afterwards. Raises on any IMAP failure, so the
    caller can leave the links in place (nothing is lost: a later run of ``untag``
    removes the rest, and mirroring restores the keyword on still-linked mail).
    """
    removed = 0
    by_account: dict[str, list[cq.ServerMessage]] = {}
    for message in messages:
        if keywords_by_thread.get(message.thread_id):
            by_account.setdefault(message.account, []).append(message)
    for account, account_messages in sorted(by_account.items()):
        with server_for(account) as server:
            for (folder, uidvalidity), folder_messages in _by_folder(account_messages):
                status = server.select(folder, readonly=False)
                if uidvalidity is not None and status.uidvalidity != uidvalidity:
                    # why: our UIDs would name other messages; a sync re-indexes the folder
                    raise FolderError(
                        f"folder {folder!r} of account {account!r} changed (UIDVALIDITY); "
                        "run 'mailhygiene sync' and try again"
                    )
                by_keywords: dict[tuple[str, ...], list[int]] = {}
                for message in folder_messages:
                    by_keywords.setdefault(keywords_by_thread[message.thread_id], []).append(
                        message.uid
                    )
                for keywords, uids in sorted(by_keywords.items()):
                    present = _present_keywords(folder_messages, keywords)
                    if present:
                        server.remove_flags(uids, present)
                removed += _record_flags(store, server, folder_messages)
    return removed


def _mirror_folder(
    store: Store,
    server: KeywordServer,
    keyword: str,
    folder: str,
    uidvalidity: int | None,
    messages: Sequence[cq.ServerMessage],
    outcome: FolderMirror,
) -> None:
    status = server.select(folder, readonly=False)
    if uidvalidity is not None and status.uidvalidity != uidvalidity:
        # why: stored UIDs now name other messages; marking them could mislead staff
        outcome.problem = "folder changed on the server (UIDVALIDITY); the next sync re-indexes it"
        return
    server.add_flags([m.uid for m in messages], [keyword])
    outcome.marked = _record_flags(store, server, messages, keyword=keyword)
    if outcome.marked < len(messages):
        outcome.problem = (
            f"the server did not keep {keyword} on {len(messages) - outcome.marked} message(s) "
            "(gone, or the folder does not allow new keywords: PERMANENTFLAGS lacks \\*)"
        )


def _record_flags(
    store: Store,
    server: KeywordServer,
    messages: Sequence[cq.ServerMessage],
    *,
    keyword: str | None = None,
) -> int:
    """Store the server's current flags of ``messages``; count those now carrying
    ``keyword`` (or, without one, those whose flags were recorded)."""
    updates = {u.uid: u for u in server.fetch_flags([m.uid for m in messages])}
    flags_by_row: dict[int, str] = {}
    counted = 0
    wanted = keyword.casefold() if keyword is not None else None
    for message in messages:
        update = updates.get(message.uid)
        if update is None:
            continue  # expunged meanwhile; the next sync forgets it
        flags_by_row[message.row_id] = " ".join(update.flags)
        if wanted is None or any(flag.casefold() == wanted for flag in update.flags):
            counted += 1
    with store.transaction() as session:
        cq.set_flags(session, flags_by_row)
    return counted


def _present_keywords(messages: Iterable[cq.ServerMessage], keywords: Sequence[str]) -> list[str]:
    """The spellings of ``keywords`` the messages actually carry (clients may change case)."""
    wanted = {k.casefold() for k in keywords}
    present = {flag for m in messages for flag in m.flags if flag.casefold() in wanted}
    return sorted(present | set(keywords))


def _by_folder(
    messages: Iterable[cq.ServerMessage],
) -> list[tuple[tuple[str, int | None], list[cq.ServerMessage]]]:
    grouped: dict[tuple[str, int | None], list[cq.ServerMessage]] = {}
    for message in messages:
        grouped.setdefault((message.folder, message.uidvalidity), []).append(message)
    return sorted(grouped.items(), key=lambda item: item[0][0])


__all__ = [
    "FolderMirror",
    "KeywordServer",
    "MirrorResult",
    "ServerFor",
    "case_keyword_prefix",
    "mirror_keywords",
    "remove_case_keywords",
]
