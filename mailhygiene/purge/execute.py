"""Execute an approved plan: batched, re-verified, journaled, resumable.

For every batch, before any server command:
1. the folder's UIDVALIDITY must be the plan's (RFC 3501 §2.3.1.1: otherwise UIDs name
   other messages);
2. each UID must still be the planned message (Message-ID and size, fetched now);
3. no case keyword may have appeared on the server since the index last saw the message;
4. the index must still say PURGE *now*: no case link, no hold, still past retention,
   judged by ``policy.decide`` with the flags the server reports now. An *erasure* plan
   (a data-subject request) removes mail before its retention ends, so for it the check
   is instead that nothing bars erasure now — no hold, no open case or case keyword, no
   closed case within its keep-after-close, no legal obligation rule
   (``policy.erasure.ErasureCheck``, the rule the erasure was planned by).
What fails any check is skipped and reported — never moved or deleted.

The journal: verified items are committed as ``in_flight`` *before* the server command
and ``done`` only after it. After a crash (kill -9, lost connection) the next run
reconciles every ``in_flight`` item with the server before anything else: still in its
folder → back to ``planned`` (re-verified later; a ``\\Deleted`` flag we set is removed);
found in quarantine (same Message-ID and size, not claimed by a ledger entry; mail
without a searchable Message-ID is found by scanning the quarantine) → ``done``; gone
from both → ``skipped`` (someone else removed it) and dropped from the index. Under a
new UIDVALIDITY the UIDs say nothing: an item is looked for in its folder by Message-ID
and size first (there → ``skipped``, UIDVALIDITY changed), then in quarantine.

A move the server answers with a warning (``MoveInDoubt``) is settled like that too,
after what its COPYUID says it put in quarantine is recorded (``QuarantineDoubt``):
what no ledger entry claims once the batch is settled was moved though not planned and
goes back to its folder, or is removed when it was only a copy of mail still there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.errors import FolderError, ImapError, MoveInDoubt
from mailhygiene.holds import hold_lookup
from mailhygiene.mailbox import FolderStatus, MessageIdentity
from mailhygiene.policy import Action, MessageFacts, Policy, Reason, decide
from mailhygiene.policy.erasure import ErasureCheck
from mailhygiene.purge.approve import check_authorised
from mailhygiene.purge.lock import account_lock
from mailhygiene.purge.model import ItemAction, ItemState, PlanKind, PlanStatus
from mailhygiene.purge.plan import summary_of
from mailhygiene.store import facts_queries, governance_queries, purge_queries
from mailhygiene.store.models import QuarantineDoubt
from mailhygiene.store.purge_queries import JournalItem
from mailhygiene.store.session import Session, Store

BATCH_SIZE = 5000
_ROUNDS = 3  # passes over what is planned: more only after a refused batch was settled


class IdentityReader(Protocol):
    """A second, read-only connection to the account with the folder open (EXAMINE)."""

    def fetch_identity(self, uids: Sequence[int]) -> dict[int, MessageIdentity]: ...

    def close(self) -> None:
        """Log out; a second call (or one after the connection was lost) does nothing."""
        ...


class PurgeServer(Protocol):
    """What execution needs from a mail server (``ImapMailServer`` implements it)."""

    capabilities: frozenset[str]
    condstore: bool

    def select(self, folder: str, *, readonly: bool = True) -> FolderStatus: ...

    def create_folder(self, folder: str) -> None: ...

    def fetch_identity(self, uids: Sequence[int]) -> dict[int, MessageIdentity]: ...

    def search_message_id(self, message_id: str) -> list[int]: ...

    def search_uids(self, start: int = 1) -> list[int]: ...

    def move(self, uids: Sequence[int], destination: str) -> dict[int, int]: ...

    def send_move(self, uids: Sequence[int], destination: str) -> Callable[[], dict[int, int]]: ...

    def open_reader(self, folder: str, uidvalidity: int) -> IdentityReader | None: ...

    def delete(self, uids: Sequence[int], *, unchanged_since: int | None = None) -> set[int]: ...

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None: ...


class ExecuteProgress(Protocol):
    def started(self, total: int) -> None: ...

    def advanced(self, count: int) -> None: ...


@dataclass
class ExecutionReport:
    ref: str
    status: str = ""
    done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    batches: int = 0
    seconds: float = 0.0


def is_protective_keyword(keyword: str, policy: Policy) -> bool:
    """The case keyword, or a per-case keyword derived from it (``$Reklamation_REK-…``)."""
    wanted = policy.case_keyword.casefold()
    folded = keyword.casefold()
    return bool(wanted) and (folded == wanted or folded.startswith(wanted + "_"))


def execute_plan(
    store: Store,
    server: PurgeServer,
    policy: Policy,
    ref: str,
    *,
    actor: str,
    now: datetime,
    progress: ExecuteProgress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ExecutionReport:
    """Carry out an approved plan; safe to call again after any interruption."""
    started = time.monotonic()
    report = ExecutionReport(ref=ref)
    with store.transaction() as session:
        plan = purge_queries.get_plan(session, ref)
        account = plan.account
    with (
        account_lock(store, account, now=now, purpose=f"execute plan {ref}"),
        _OpeningAhead(server) as ahead,
    ):
        with store.transaction() as session:
            plan = purge_queries.get_plan(session, ref, for_update=True)
            check_authorised(session, plan, policy, now)
            # why: the server opens the plan's first folder while the journal is written
            # and read (a SELECT of a 100k folder takes 0.1 s, and more over the network);
            # only once the plan is authorised, and no server command changes anything yet
            ahead.open(min(summary_of(plan).by_folder, default=None))
            # why: in the transaction that found the stored items unaltered and marks the
            # plan executing: the journal is those items, or was written by an earlier run
            purge_queries.write_journal(session, plan.id)
            resuming = plan.status == PlanStatus.EXECUTING.value
            kind = PlanKind(plan.kind)
            plan.status = PlanStatus.EXECUTING.value
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.PURGE_EXECUTE,
                subject=ref,
                data={"phase": "resume" if resuming else "start", "messages": plan.item_count},
                at=now,
            )
            in_flight = purge_queries.items_in_state(session, plan.id, ItemState.IN_FLIGHT)
            planned = purge_queries.items_in_state(session, plan.id, ItemState.PLANNED)
            in_doubt = bool(purge_queries.quarantine_doubts(session, account=account))
        if any(item.action == ItemAction.MOVE.value for item in [*in_flight, *planned]):
            ahead.wait()
            server.create_folder(policy.quarantine_folder)
        if in_flight or in_doubt:
            ahead.discard()  # reconciling opens other folders on the connection
            report.reconciled = _settle(
                store, server, policy, (plan.id, ref, account), in_flight, actor=actor, now=now
            )
            with store.transaction() as session:
                planned = purge_queries.items_in_state(session, plan.id, ItemState.PLANNED)
        if progress is not None:
            progress.started(len(planned))
        batch_number = 0
        for _round in range(_ROUNDS):
            by_folder: dict[str, list[JournalItem]] = defaultdict(list)
            for item in planned:
                by_folder[item.folder].append(item)
            settled_again = False
            for folder, items in sorted(by_folder.items()):  # by name, whatever the collation
                opened = ahead.take(folder)
                with _closing(opened.reader if opened is not None else None):
                    batch_number, settled = _execute_folder(
                        store,
                        server,
                        policy,
                        plan.id,
                        ref,
                        account,
                        folder,
                        items,
                        report,
                        actor=actor,
                        now=now,
                        batch_size=batch_size,
                        first_batch=batch_number,
                        progress=progress,
                        kind=kind,
                        opened=opened,
                    )
                settled_again = settled_again or settled
            if not settled_again:
                break
            # why: a refused batch was settled from the server; what is still in its
            # folder went back to planned and is verified again from the start
            with store.transaction() as session:
                planned = purge_queries.items_in_state(session, plan.id, ItemState.PLANNED)
        with store.transaction() as session:
            plan = purge_queries.get_plan(session, ref, for_update=True)
            counts = purge_queries.count_by_state(session, plan.id)
            report.remaining = counts.get(ItemState.PLANNED.value, 0) + counts.get(
                ItemState.IN_FLIGHT.value, 0
            )
            report.done = counts.get(ItemState.DONE.value, 0)
            report.skipped = purge_queries.skipped_reasons(session, plan.id)
            if report.remaining == 0:
                plan.status = PlanStatus.DONE.value
                plan.finished_at = now
            report.status = plan.status
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.PURGE_EXECUTE,
                subject=ref,
                data={
                    "phase": "finished" if report.remaining == 0 else "stopped",
                    "done": report.done,
                    "skipped": sum(report.skipped.values()),
                    "remaining": report.remaining,
                },
                at=now,
            )
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Opened:
    """A folder opened ahead: its status (None: it no longer exists) and the second
    connection opened on it (None: it could not be)."""

    status: FolderStatus | None
    reader: IdentityReader | None


class _OpeningAhead:
    """Opens a folder on a helper thread (SELECT, then a second connection) while this
    thread works on the database; ``take`` hands it to the folder's execution.

    The connection is used by one thread at a time: this one leaves the server alone
    until it has waited for the opening (``wait``, ``take``, ``discard``, the end of the
    block). A second connection nobody took is closed.
    """

    def __init__(self, server: PurgeServer) -> None:
        self._server = server
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailhygiene-open")
        self._opening: Future[_Opened] | None = None
        self.folder: str | None = None

    def __enter__(self) -> _OpeningAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.discard()
        finally:
            self._pool.shutdown()

    def open(self, folder: str | None) -> None:
        if folder is not None:
            self.folder = folder
            self._opening = self._pool.submit(self._open, folder)

    def _open(self, folder: str) -> _Opened:
        status = _select_for_plan(self._server, folder)
        if status is None:
            return _Opened(None, None)
        return _Opened(status, self._server.open_reader(folder, status.uidvalidity))

    def wait(self) -> None:
        """Until the opening is done (its errors are raised by ``take``)."""
        if self._opening is not None:
            wait([self._opening])

    def take(self, folder: str) -> _Opened | None:
        """What was opened, once, if it was ``folder`` (its errors are raised here); any
        other folder is forgotten (``discard``)."""
        if folder != self.folder:
            self.discard()
            return None
        opening, self._opening, self.folder = self._opening, None, None
        return opening.result() if opening is not None else None

    def discard(self) -> None:
        """Forget what was opened, closing its second connection. Its errors are dropped:
        the connection is used again, and then reports its own."""
        opening, self._opening, self.folder = self._opening, None, None
        if opening is None:
            return
        try:
            opened = opening.result()
        except (ImapError, OSError):
            return
        if opened.reader is not None:
            opened.reader.close()


def _select_for_plan(server: PurgeServer, folder: str) -> FolderStatus | None:
    try:
        return server.select(folder, readonly=False)
    except FolderError:
        return None


def _execute_folder(
    store: Store,
    server: PurgeServer,
    policy: Policy,
    plan_id: int,
    ref: str,
    account: str,
    folder: str,
    items: list[JournalItem],
    report: ExecutionReport,
    *,
    actor: str,
    now: datetime,
    batch_size: int,
    first_batch: int,
    progress: ExecuteProgress | None,
    kind: PlanKind = PlanKind.PURGE,
    opened: _Opened | None = None,
) -> tuple[int, bool]:
    """Execute one folder's items in batches (``opened``: the folder as opened ahead);
    returns the last batch number and whether a batch the server refused was settled
    from the server (its rest needs another pass)."""
    status = opened.status if opened is not None else _select_for_plan(server, folder)
    if status is None:
        _skip(store, [i.id for i in items], f"folder {folder!r} no longer exists", now)
        return first_batch, False
    stale = [i.id for i in items if i.uidvalidity != status.uidvalidity]
    if stale:
        # why: a new UIDVALIDITY means every planned UID may now name a different message
        _skip(store, stale, "UIDVALIDITY changed since the plan", now)
    current = [i for i in items if i.uidvalidity == status.uidvalidity]
    batches = [current[start : start + batch_size] for start in range(0, len(current), batch_size)]
    if not batches:
        return first_batch, False
    batch_number = first_batch
    # Moves are pipelined, so that the server does not wait for us: batch N is judged
    # and marked in flight while the server still moves batch N-1, and batch N's move is
    # sent as soon as that move is read. Batch N's identities are read on a second,
    # read-only connection (``open_reader``) while the server moves batch N-1: a FETCH
    # is never pipelined behind a MOVE on the same connection (Dovecot answered such a
    # FETCH with messages missing), but another session reads other UIDs beside it. The
    # journal's database work runs on one helper thread, in order: batch N+1's index
    # facts are read, and batch N-1's outcome recorded, while this thread waits for the
    # server. What makes a crash safe is unchanged: every batch is marked in flight
    # (committed) before the server command that names exactly its UIDs; a crash leaves
    # at most two batches in flight, and a resumed run settles both from the server.
    # Without a second connection (or once it fails), batch N+1's identities are read on
    # this one after batch N-1's move was read and before batch N's is sent.
    # A delete is not pipelined (it runs when sent), so its identities are fetched after
    # the batch before it is done: as close to the delete as in an unpipelined run.
    pipelined = ItemAction(batches[0][0].action) is ItemAction.MOVE
    reader: IdentityReader | None = None
    if pipelined and len(batches) > 1:  # one opened ahead and not used: the caller closes it
        reader = opened.reader if opened else server.open_reader(folder, status.uidvalidity)
    # why: SQLite takes one writer at a time, and a writer that finds it busy sleeps in
    # steps of up to 100 ms; this run's two threads take turns on a lock instead
    turn: AbstractContextManager[object] = threading.Lock() if store.is_sqlite else nullcontext()
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailhygiene-journal") as journal,
        _closing(reader),
    ):
        facts = journal.submit(_indexed_rows, store, policy, account, batches[0])
        identities = server.fetch_identity(_uids(batches[0]))
        read_aside = False  # whether ``identities`` came from the second connection
        moving: _Moving | None = None  # the previous batch: sent, its outcome not yet read
        recorded: Future[None] | None = None

        def conclude(
            sent: _Moving, next_verified: list[tuple[JournalItem, MessageIdentity]]
        ) -> bool:
            """Read a sent batch's outcome and journal it (on the helper thread); False
            when the server refused it and it was settled from the server instead."""
            nonlocal recorded
            outcome = _finish(sent)
            if isinstance(outcome, _Refused):
                _settle_refused(
                    store,
                    server,
                    policy,
                    (plan_id, ref, account, folder),
                    [sent.verified, next_verified],
                    outcome,
                    report,
                    journal_work=(facts, recorded),
                    actor=actor,
                    now=now,
                )
                return False
            if recorded is not None:
                recorded.result()  # the batch before: recorded, or its error raised here
            recorded = journal.submit(
                _record_batch,
                store,
                plan_id,
                ref,
                account,
                folder,
                outcome,
                status,
                sent.number,
                actor=actor,
                now=now,
                policy=policy,
                turn=turn,
            )
            _advance(report, progress, sent.batch)
            return True

        for index, batch in enumerate(batches):
            batch_number += 1
            following = batches[index + 1] if index + 1 < len(batches) else None
            missing = [i.uid for i in batch if i.uid not in identities] if read_aside else []
            if missing:
                # why: what the second connection did not return (gone, or that
                # connection failed) is read again on this one, once the server is
                # idle: "gone" is only ever concluded from the connection that moves
                if moving is not None and not conclude(moving, []):
                    return batch_number, True
                moving = None
                identities.update(server.fetch_identity(missing))
            verified, refusals = _judge(policy, batch, identities, facts.result(), now, kind)
            if following is not None:  # read while the server works and we journal
                facts = journal.submit(_indexed_rows, store, policy, account, following)
            for reason, ids in refusals.items():
                _skip(store, ids, reason, now, turn=turn)
            if verified:
                _mark_in_flight(store, verified, batch_number, turn)
            if moving is not None and not conclude(moving, verified):
                return batch_number, True
            if following is not None and pipelined and reader is None:
                # The server is idle here (the previous move was read above): a FETCH
                # never runs beside a MOVE on the same connection, whose expunges it
                # could miss.
                identities, read_aside = server.fetch_identity(_uids(following)), False
            moving = None
            if verified:
                moving = _Moving(
                    batch, batch_number, verified, _start_batch(server, policy, verified)
                )
            else:
                _advance(report, progress, batch)
            if following is not None and reader is not None:
                identities, read_aside = {}, True
                try:
                    identities = reader.fetch_identity(_uids(following))
                except ImapError:
                    # why: the run goes on without it; the next batch's identities
                    # are all read on this connection once its move is answered
                    reader.close()
                    reader = None
            if following is not None and not pipelined:
                identities = server.fetch_identity(_uids(following))
        if moving is not None and not conclude(moving, []):
            return batch_number, True
        if recorded is not None:
            recorded.result()
    return batch_number, False


@contextmanager
def _closing(reader: IdentityReader | None) -> Iterator[None]:
    """Close the second connection, if there is one, however the folder's run ends."""
    try:
        yield
    finally:
        if reader is not None:
            reader.close()


def _uids(batch: Sequence[JournalItem]) -> list[int]:
    return [item.uid for item in batch]


def _advance(
    report: ExecutionReport, progress: ExecuteProgress | None, batch: Sequence[JournalItem]
) -> None:
    report.batches += 1
    if progress is not None:
        progress.advanced(len(batch))


@dataclass
class _Moving:
    """A batch whose server command was sent and whose outcome is still to be read."""

    batch: list[JournalItem]
    number: int
    verified: list[tuple[JournalItem, MessageIdentity]]
    outcome: Callable[[], _BatchOutcome]


@dataclass
class _Refused:
    """A sent batch whose outcome cannot be taken from the server's answer: it refused
    the command because a message of it was expunged by someone else after we verified
    it (RFC 5530), or it moved and warned (``MoveInDoubt``). ``moved``: source →
    quarantine UIDs the server says it moved all the same."""

    moved: dict[int, int]


def _finish(moving: _Moving) -> _BatchOutcome | _Refused:
    """The sent batch's outcome, or ``_Refused`` when it must be settled from the server."""
    try:
        return moving.outcome()
    except MoveInDoubt as doubt:
        return _Refused(doubt.moved)
    except ImapError as error:
        if "EXPUNGEISSUED" not in str(error):
            raise
        return _Refused({})


def _settle_refused(
    store: Store,
    server: PurgeServer,
    policy: Policy,
    plan: tuple[int, str, str, str],
    in_flight: list[list[tuple[JournalItem, MessageIdentity]]],
    refused: _Refused,
    report: ExecutionReport,
    *,
    journal_work: tuple[Future[dict[int, facts_queries.IndexedRow]], Future[None] | None],
    actor: str,
    now: datetime,
) -> None:
    """Settle the batch the server refused, and the next one if it was already marked in
    flight (not sent), from the server as a resumed run would; what is still in the
    folder goes back to planned and is verified again in another pass. What the server
    put in quarantine that no planned item turned out to be is checked
    (``_return_unplanned``)."""
    for work in journal_work:
        if work is not None:
            work.result()  # no journal work left behind on the helper thread
    plan_id, ref, account, folder = plan
    if refused.moved:
        # why: committed before anything else, so that a run that stops while settling
        # leaves the check of what the server moved to the next one
        with store.transaction() as session:
            purge_queries.record_quarantine_doubts(
                session,
                account=account,
                plan_ref=ref,
                original_folder=folder,
                quarantine_folder=policy.quarantine_folder,
                quarantine_uids=refused.moved.values(),
                at=now,
            )
    settled = _settle(
        store,
        server,
        policy,
        (plan_id, ref, account),
        [item for batch in in_flight for item, _ in batch],
        actor=actor,
        now=now,
    )
    for what, count in settled.items():
        report.reconciled[what] = report.reconciled.get(what, 0) + count
    report.batches += 1


def _settle(
    store: Store,
    server: PurgeServer,
    policy: Policy,
    plan: tuple[int, str, str],
    in_flight: list[JournalItem],
    *,
    actor: str,
    now: datetime,
) -> dict[str, int]:
    """Settle ``in_flight`` items from the server (``_reconcile``), then what moves in
    doubt put in quarantine (``_return_unplanned``): counts by what was found."""
    plan_id, ref, account = plan
    settled = _reconcile(
        store, server, policy, plan_id, ref, account, in_flight, actor=actor, now=now
    )
    returned = _return_unplanned(store, server, account, actor=actor, now=now)
    if returned:
        settled["unplanned mail the server moved, put back"] = returned
    return settled


def _return_unplanned(
    store: Store, server: PurgeServer, account: str, *, actor: str, now: datetime
) -> int:
    """Check what moves in doubt put in quarantine (``QuarantineDoubt``), once their
    batches are settled: what no quarantine ledger entry claims was moved by the server
    though it was not planned (Dovecot, its selected folder recreated by another client,
    moves the UIDs' new owners) and goes back to its folder — or, when the folder still
    holds the same message (Message-ID and size), it was copied, not moved, and the copy
    is removed. Returns how many went back."""
    with store.transaction() as session:
        doubts = purge_queries.quarantine_doubts(session, account=account)
    by_place: dict[tuple[str, str, str], list[QuarantineDoubt]] = defaultdict(list)
    for doubt in doubts:
        by_place[doubt.quarantine_folder, doubt.original_folder, doubt.plan_ref].append(doubt)
    returned = 0
    for (quarantine, folder, ref), group in sorted(by_place.items()):
        uids = [doubt.quarantine_uid for doubt in group]
        with store.transaction() as session:
            unclaimed = sorted(set(uids) - _claimed_in_quarantine(session, account, quarantine))
        strays: dict[int, MessageIdentity] = {}
        if unclaimed and _select_for_plan(server, quarantine) is not None:
            strays = server.fetch_identity(unclaimed)  # what is still there
        copies: list[int] = []
        if strays and _select_for_plan(server, folder) is not None:
            # why: a server that failed half-way through a move may have copied without
            # removing: a copy whose original is still in the folder goes, not back
            twins = _identities_in_selected(
                server, [(stray.message_id, stray.size) for stray in strays.values()]
            )
            copies = sorted(uid for uid, s in strays.items() if (s.message_id, s.size) in twins)
        back = sorted(set(strays) - set(copies))
        if back:
            server.create_folder(folder)
        if strays:
            server.select(quarantine, readonly=False)
        if copies:
            server.delete(copies)
        if back:
            server.move(back, folder)
        with store.transaction() as session:
            purge_queries.clear_quarantine_doubts(session, [doubt.id for doubt in group])
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.PURGE_BATCH,
                subject=ref,
                data={
                    "folder": folder,
                    "reconciled": True,
                    "in_doubt": len(uids),
                    "unplanned_put_back": len(back),
                    "duplicate_copies_removed": len(copies),
                },
                at=now,
            )
        returned += len(back)
    return returned


def _claimed_in_quarantine(session: Session, account: str, quarantine: str) -> set[int]:
    """UIDs in the ``quarantine`` folder that ledger entries of held (or expunging)
    mail of the account name."""
    return {
        entry.quarantine_uid
        for entry in purge_queries.quarantine_entries(
            session, account=account, states=("held", "expunging")
        )
        if entry.quarantine_folder == quarantine and entry.quarantine_uid
    }


def _indexed_rows(
    store: Store, policy: Policy, account: str, batch: list[JournalItem]
) -> dict[int, facts_queries.IndexedRow]:
    """The batch's index rows with their current cases and holds."""
    rows = [item.message_row for item in batch if item.message_row]
    with store.transaction() as session:
        holds_for = hold_lookup(session, account=account, zone=policy.zone)
        return {
            row.message_row: row
            for row in facts_queries.iter_indexed(
                session, account=account, holds_for=holds_for, message_rows=rows
            )
        }


def _judge(
    policy: Policy,
    batch: list[JournalItem],
    identities: dict[int, MessageIdentity],
    indexed: dict[int, facts_queries.IndexedRow],
    now: datetime,
    kind: PlanKind = PlanKind.PURGE,
) -> tuple[list[tuple[JournalItem, MessageIdentity]], dict[str, list[int]]]:
    """Split a batch into items still safe to act on and refusals grouped by reason."""
    kept_now = kept_now_check(policy, kind)
    refusals: dict[str, list[int]] = defaultdict(list)
    verified: list[tuple[JournalItem, MessageIdentity]] = []
    for item in batch:
        identity = identities.get(item.uid)
        if identity is None:
            refusals["gone from the server before execution"].append(item.id)
            continue
        if identity.message_id != item.message_id or identity.size != item.size:
            # why: the UID now names a different message than the one planned
            refusals["UID holds a different message than planned"].append(item.id)
            continue
        row = indexed.get(item.message_row or -1)
        if row is None:
            refusals["no longer in the index (re-indexed or removed)"].append(item.id)
            continue
        server_keywords = frozenset(identity.flags)
        added = {
            k for k in server_keywords - row.facts.keywords if is_protective_keyword(k, policy)
        }
        if added:
            # why: someone marked it as complaint mail after the plan was made
            refusals["case keyword added on the server since the plan"].append(item.id)
            continue
        facts_now = _with_keywords(row.facts, server_keywords)
        keeping = kept_now(facts_now, now)
        if keeping is not None:
            refusals[f"kept now: {keeping.kind.value} {keeping.name}"].append(item.id)
            continue
        verified.append((item, identity))
    return verified, refusals


def kept_now_check(
    policy: Policy, kind: PlanKind
) -> Callable[[MessageFacts, datetime], Reason | None]:
    """What keeps a message *now*, or None: for a purge, ``decide`` must say PURGE; for an
    erasure, nothing may bar erasure (hold, case, legal obligation)."""
    if kind is PlanKind.ERASURE:
        check = ErasureCheck(policy)

        def erasure_bar(facts: MessageFacts, now: datetime) -> Reason | None:
            bar = check.bar(facts, now)
            return bar.reason if bar is not None else None

        return erasure_bar

    def retention(facts: MessageFacts, now: datetime) -> Reason | None:
        verdict = decide(facts, policy, now)
        return None if verdict.action is Action.PURGE else verdict.reasons[0]

    return retention


def _with_keywords(facts: MessageFacts, keywords: frozenset[str]) -> MessageFacts:
    return facts if facts.keywords == keywords else replace(facts, keywords=keywords)


@dataclass
class _BatchOutcome:
    """What the server did with one batch."""

    action: ItemAction
    verified: list[tuple[JournalItem, MessageIdentity]]
    done: list[JournalItem]
    not_moved: set[int]
    refused: set[int]
    mapping: dict[int, int]


def _mark_in_flight(
    store: Store,
    verified: list[tuple[JournalItem, MessageIdentity]],
    batch_number: int,
    turn: AbstractContextManager[object],
) -> None:
    """Journal the batch before the server command: a crash from here on is reconciled."""
    with turn, store.transaction() as session:
        purge_queries.mark_items(
            session, [item.id for item, _ in verified], ItemState.IN_FLIGHT, batch=batch_number
        )


def _start_batch(
    server: PurgeServer, policy: Policy, verified: list[tuple[JournalItem, MessageIdentity]]
) -> Callable[[], _BatchOutcome]:
    """Send the command that moves or deletes exactly the batch's UIDs (already marked in
    flight); the function returned reads what the server did. A move is pipelined; a
    delete (flag with UNCHANGEDSINCE, then ``UID EXPUNGE`` of what was flagged) runs now."""
    uids = [item.uid for item, _ in verified]
    action = ItemAction(verified[0][0].action)
    if action is ItemAction.MOVE:
        moved = server.send_move(uids, policy.quarantine_folder)

        def moved_outcome() -> _BatchOutcome:
            mapping = moved()
            not_moved: set[int] = set()
            if "UIDPLUS" in server.capabilities:
                # why: COPYUID names every message the server moved (RFC 4315 §3); one
                # left out was expunged by someone else after we verified it and is
                # not in quarantine
                not_moved = set(uids) - set(mapping)
            done = [item for item, _ in verified if item.uid not in not_moved]
            return _BatchOutcome(action, verified, done, not_moved, set(), mapping)

        return moved_outcome
    modseqs = [identity.modseq for _, identity in verified if identity.modseq is not None]
    unchanged_since = max(modseqs) if server.condstore and modseqs else None
    refused = server.delete(uids, unchanged_since=unchanged_since)
    done = [item for item, _ in verified if item.uid not in refused]
    deleted = _BatchOutcome(action, verified, done, set(), refused, {})
    return lambda: deleted


def _record_batch(
    store: Store,
    plan_id: int,
    ref: str,
    account: str,
    folder: str,
    outcome: _BatchOutcome,
    status: FolderStatus,
    batch_number: int,
    *,
    actor: str,
    now: datetime,
    policy: Policy,
    turn: AbstractContextManager[object],
) -> None:
    """Commit what the server did with a batch: the journal, quarantine ledger or
    tombstones, the index rows that left the folder, and the audit entry."""
    done, not_moved, refused = outcome.done, outcome.not_moved, outcome.refused
    mapping, verified, action = outcome.mapping, outcome.verified, outcome.action
    moved = action is ItemAction.MOVE
    ledger = _quarantine_rows(done, mapping, ref, account, policy, now) if moved else []
    with turn, store.transaction() as session:
        purge_queries.mark_items(session, [i.id for i in done], ItemState.DONE, done_at=now)
        if not_moved:
            purge_queries.mark_items(
                session,
                [i.id for i, _ in verified if i.uid in not_moved],
                ItemState.SKIPPED,
                outcome="gone from the server during execution",
                done_at=now,
            )
        if refused:
            # why: the server says these changed after we verified them; leave them alone
            purge_queries.mark_items(
                session,
                [i.id for i, _ in verified if i.uid in refused],
                ItemState.SKIPPED,
                outcome="changed on the server during execution",
                done_at=now,
            )
        if moved:
            purge_queries.add_quarantine_entries(session, ledger)
        else:  # deleted for good: the proof commits with the state, before the index forgets
            governance_queries.record_plan_tombstones(
                session, plan_id=plan_id, item_ids=[i.id for i in done], action="deleted", at=now
            )
        purge_queries.forget_messages(
            session, account, folder, [i.uid for i in done] + sorted(not_moved)
        )
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.PURGE_BATCH,
            subject=ref,
            data={
                "folder": folder,
                "batch": batch_number,
                "action": action.value,
                "done": len(done),
                "gone_before_move": len(not_moved),
                "refused_by_server": len(refused),
                "uidvalidity": status.uidvalidity,
            },
            at=now,
        )


def _quarantine_rows(
    done: Sequence[JournalItem],
    mapping: dict[int, int],
    ref: str,
    account: str,
    policy: Policy,
    now: datetime,
) -> list[dict[str, object]]:
    purge_after = policy.quarantine_grace.add_to(now)
    return [
        {
            "account": account,
            "plan_item_id": item.id,
            "plan_ref": ref,
            "original_folder": item.folder,
            "quarantine_folder": policy.quarantine_folder,
            "quarantine_uidvalidity": None,
            "quarantine_uid": mapping.get(item.uid),
            "message_id": item.message_id,
            "size": item.size,
            "moved_at": now,
            "purge_after": purge_after,
            "state": "held",
        }
        for item in done
    ]


def _skip(
    store: Store,
    item_ids: list[int],
    reason: str,
    now: datetime,
    *,
    turn: AbstractContextManager[object] | None = None,
) -> None:
    if item_ids:
        with turn or nullcontext(), store.transaction() as session:
            purge_queries.mark_items(
                session, item_ids, ItemState.SKIPPED, outcome=reason, done_at=now
            )


def _reconcile(
    store: Store,
    server: PurgeServer,
    policy: Policy,
    plan_id: int,
    ref: str,
    account: str,
    in_flight: list[JournalItem],
    *,
    actor: str,
    now: datetime,
) -> dict[str, int]:
    """Settle items a crashed run left ``in_flight`` by looking at the server."""
    outcome: Counter[str] = Counter()
    by_folder: dict[str, list[JournalItem]] = defaultdict(list)
    for item in in_flight:
        by_folder[item.folder].append(item)
    for folder, items in by_folder.items():
        status = _select_for_plan(server, folder)
        present: dict[int, MessageIdentity] = {}
        if status is not None and all(i.uidvalidity == status.uidvalidity for i in items):
            present = server.fetch_identity([i.uid for i in items])
        still_there = [
            i
            for i in items
            if (ident := present.get(i.uid)) is not None and ident.message_id == i.message_id
        ]
        deleted_flag = [i.uid for i in still_there if "\\Deleted" in present[i.uid].flags]
        if deleted_flag:
            # why: we may have flagged these before the crash; unflag so no one expunges them
            server.remove_flags(deleted_flag, ["\\Deleted"])
        with store.transaction() as session:
            purge_queries.mark_items(session, [i.id for i in still_there], ItemState.PLANNED)
        outcome["not yet acted on; will be re-verified"] += len(still_there)
        gone = [i for i in items if i not in still_there]
        # why: only UIDs checked under the planned UIDVALIDITY may be dropped from the index
        checked = status is not None and all(i.uidvalidity == status.uidvalidity for i in items)
        vanished: list[JournalItem] = []
        if gone and status is not None and not checked:
            # why: under a new UIDVALIDITY the UIDs say nothing; what is still in the
            # folder (by Message-ID and size) was not acted on, whatever a copy of it in
            # quarantine suggests (a server that failed half-way through a move)
            twins = _identities_in_selected(server, [(i.message_id, i.size) for i in gone])
            vanished = [i for i in gone if (i.message_id, i.size) in twins]
            gone = [i for i in gone if i not in vanished]
        moved: dict[int, int] = {}
        if gone and gone[0].action == ItemAction.MOVE.value:
            if _select_for_plan(server, policy.quarantine_folder) is not None:
                moved = _find_in_quarantine(store, server, policy, account, gone)
            vanished += [i for i in gone if i.id not in moved]
        completed = [i for i in gone if i not in vanished]
        if checked:
            vanished_reason = "gone from its folder and not in quarantine (removed by someone else)"
        elif status is None:
            vanished_reason = f"folder {folder!r} no longer exists"
        else:  # its UID now names another message or none: where it is now is unknown
            vanished_reason = "UIDVALIDITY changed since the plan"
        with store.transaction() as session:
            purge_queries.mark_items(
                session, [i.id for i in completed], ItemState.DONE, done_at=now
            )
            if completed and completed[0].action == ItemAction.DELETE.value:
                # deleted for good before the interruption: record the proof with the state
                governance_queries.record_plan_tombstones(
                    session,
                    plan_id=plan_id,
                    item_ids=[i.id for i in completed],
                    action="deleted",
                    at=now,
                )
            if moved:
                mapping = {i.uid: moved[i.id] for i in completed if i.id in moved}
                purge_queries.add_quarantine_entries(
                    session,
                    _quarantine_rows(
                        [i for i in completed if i.id in moved], mapping, ref, account, policy, now
                    ),
                )
            if checked:
                purge_queries.forget_messages(
                    session, account, folder, [i.uid for i in [*completed, *vanished]]
                )
            if vanished:
                purge_queries.mark_items(
                    session,
                    [i.id for i in vanished],
                    ItemState.SKIPPED,
                    outcome=vanished_reason,
                    done_at=now,
                )
            audit.append(
                session,
                actor=actor,
                tag=AuditTag.PURGE_BATCH,
                subject=ref,
                data={
                    "folder": folder,
                    "reconciled": True,
                    "completed": len(completed),
                    "requeued": len(still_there),
                    "vanished": len(vanished),
                },
                at=now,
            )
        outcome["completed before the interruption"] += len(completed)
        outcome["removed by someone else" if checked else vanished_reason] += len(vanished)
    return {k: v for k, v in outcome.items() if v}


def _identities_in_selected(
    server: PurgeServer, wanted: Sequence[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Which of the (Message-ID, size) pairs ``wanted`` the selected folder holds, found by
    searching for each Message-ID (one SEARCH cannot carry is not found)."""
    candidates = {
        uid for message_id, _size in wanted for uid in server.search_message_id(message_id)
    }
    found = server.fetch_identity(sorted(candidates)) if candidates else {}
    return {(identity.message_id, identity.size) for identity in found.values()} & set(wanted)


def _find_in_quarantine(
    store: Store, server: PurgeServer, policy: Policy, account: str, items: list[JournalItem]
) -> dict[int, int]:
    """Where each moved item landed in the (selected) quarantine folder: item id → UID.

    A match carries the item's Message-ID and size and is not already claimed by a
    quarantine ledger entry or by another item here. Mail whose Message-ID cannot be
    searched for (none at all, or characters SEARCH cannot carry) is matched by reading
    the identities of the whole quarantine folder.
    """
    with store.transaction() as session:
        claimed = _claimed_in_quarantine(session, account, policy.quarantine_folder)
    searched = {item.id: server.search_message_id(item.message_id) for item in items}
    if all(searched.values()):
        candidates = {uid for uids in searched.values() for uid in uids}
    else:
        candidates = set(server.search_uids(1))
    identities = server.fetch_identity(sorted(candidates - claimed)) if candidates else {}
    found: dict[int, int] = {}
    taken: set[int] = set()
    for item in items:
        pool = searched[item.id] or list(identities)
        for uid in sorted(pool, reverse=True):  # the newest copy is the one just moved
            identity = identities.get(uid)
            if (
                uid not in taken
                and identity is not None
                and identity.message_id == item.message_id
                and identity.size == item.size
            ):
                found[item.id] = uid
                taken.add(uid)
                break
    return found
