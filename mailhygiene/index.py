"""Sync a mailbox into the index: first run fetches everything, later runs only changes.

Per folder (RFC 3501 §2.3.1.1, RFC 7162 §3.1):
- UIDVALIDITY differs from what we stored → every stored UID is meaningless: drop the
  folder's rows and index it again (case links live on threads, so they survive).
- New mail: UIDs from our ``synced_uidnext`` on, fetched in batches; each batch commits
  together with the new resume position, so an interrupted sync continues where it
  stopped and never duplicates rows. A large fetch (an initial sync) is parsed and
  inserted by worker processes (``index_pipeline``), which commit batches out of order;
  there the resume position follows the unbroken run of committed batches, and rows a
  crash left above it are not counted as known and are replaced when fetched again.
- Flag and keyword changes: ``CHANGEDSINCE`` our HIGHESTMODSEQ with CONDSTORE; without
  it, a FLAGS scan of every known UID.
- Expunges: the server's EXISTS must equal what we know plus what is new; only when it
  does not do we list the server's UIDs and forget the missing ones.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from queue import Queue
from threading import Thread
from typing import Protocol

from mailhygiene.errors import FolderError
from mailhygiene.imap.protocol import MailServer
from mailhygiene.imap.wire import AscendingUids
from mailhygiene.index_pipeline import (
    BatchOutcome,
    RawIndexSource,
    index_in_workers,
    parallel_source,
)
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.processes import Parallelism
from mailhygiene.store import index_queries as q
from mailhygiene.store.session import Store


class SyncProgress(Protocol):
    """Receives progress; the CLI draws a bar from it, ``--json`` passes a silent one."""

    def folder_started(self, folder: str, to_fetch: int) -> None: ...

    def fetched(self, count: int) -> None: ...

    def folder_finished(self, result: FolderSyncResult) -> None: ...


class SilentProgress:
    def folder_started(self, folder: str, to_fetch: int) -> None:
        return None

    def fetched(self, count: int) -> None:
        return None

    def folder_finished(self, result: FolderSyncResult) -> None:
        return None


@dataclass
class FolderSyncResult:
    folder: str
    new: int = 0
    flags_changed: int = 0
    expunged: int = 0
    reindexed: bool = False
    problems: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SyncResult:
    account: str
    capabilities: tuple[str, ...]
    folders: list[FolderSyncResult] = field(default_factory=list)
    dropped_folders: list[str] = field(default_factory=list)
    threads_linked: int = 0

    @property
    def new(self) -> int:
        return sum(f.new for f in self.folders)

    @property
    def problems(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for folder in self.folders:
            for kind, count in folder.problems.items():
                totals[kind] = totals.get(kind, 0) + count
        return totals


@dataclass(frozen=True)
class SyncRequest:
    account: str
    host: str
    username: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    only_folders: tuple[str, ...] = ()


def choose_folders(server_folders: list[str], request: SyncRequest) -> list[str]:
    """The folders to sync: ``--folder`` names (which must exist) or include/exclude globs."""
    if request.only_folders:
        known = set(server_folders)
        for name in request.only_folders:
            if name not in known:
                raise FolderError(
                    f"folder {name!r} does not exist in account {request.account!r}; "
                    f"folders there: {', '.join(sorted(server_folders))}"
                )
        return list(request.only_folders)
    chosen = []
    for name in server_folders:
        included = any(fnmatch.fnmatchcase(name, pattern) for pattern in request.include)
        excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in request.exclude)
        if included and not excluded:
            chosen.append(name)
    return chosen


def sync_account(
    store: Store,
    server: MailServer,
    request: SyncRequest,
    *,
    now: datetime,
    progress: SyncProgress | None = None,
    after_batch: Callable[[], None] | None = None,
    parallel: Parallelism | None = None,
) -> SyncResult:
    """Bring the index of one account up to date with the server.

    ``parallel`` says from how many new messages in a folder, and with how many worker
    processes, parsing and inserting run beside the fetch (default: 20,000 and
    ``min(2, cores)``; ``Parallelism(workers=0)`` keeps everything in this process).
    """
    progress = progress or SilentProgress()
    parallel = parallel or Parallelism()
    with store.transaction() as session:
        account_id = q.ensure_account(session, request.account, request.host, request.username, now)
    server_folders = server.list_folders()
    folders = choose_folders(server_folders, request)
    result = SyncResult(account=request.account, capabilities=tuple(sorted(server.capabilities)))
    for folder in folders:
        result.folders.append(
            _sync_folder(store, server, account_id, folder, now, progress, after_batch, parallel)
        )
    if not request.only_folders:
        with store.transaction() as session:
            gone = set(q.folder_names(session, account_id)) - set(server_folders)
            for name in sorted(gone):
                q.drop_folder(session, account_id, name)
                result.dropped_folders.append(name)
    with store.transaction() as session:
        q.record_account_sync(session, account_id, server.capabilities, now)
    store.settle_after(result.new)  # the first sync of a mailbox, typically
    return result


def _sync_folder(
    store: Store,
    server: MailServer,
    account_id: int,
    folder: str,
    now: datetime,
    progress: SyncProgress,
    after_batch: Callable[[], None] | None,
    parallel: Parallelism,
) -> FolderSyncResult:
    started = time.monotonic()
    result = FolderSyncResult(folder=folder)
    status = server.select(folder, readonly=True)
    with store.transaction() as session:
        state = q.ensure_folder(session, account_id, folder)
        if state.uidvalidity is not None and state.uidvalidity != status.uidvalidity:
            q.reset_folder(session, state.id, status.uidvalidity)
            result.reindexed = True
        elif state.uidvalidity is None:
            q.set_folder_position(session, state.id, uidvalidity=status.uidvalidity)
    if result.reindexed:
        with store.transaction() as session:
            state = q.ensure_folder(session, account_id, folder)

    known_below = state.synced_uidnext
    # Rows at or above the resume position were committed by an interrupted parallel
    # fetch: not known yet (they are fetched again and replaced), so not counted.
    leftovers = 0
    if state.message_count:
        with store.transaction() as session:
            leftovers = q.count_from_uid(session, state.id, known_below)
    known_count = state.message_count - leftovers
    flag_scan_uids: set[int] | None = None

    # Flags first, over the UIDs we already know, so the new batch does not need a scan.
    if known_count:
        if server.condstore and state.highestmodseq is not None:
            if status.highestmodseq != state.highestmodseq:
                updates = server.fetch_flags(
                    changed_since=state.highestmodseq, below_uid=known_below
                )
                with store.transaction() as session:
                    result.flags_changed = q.apply_flag_updates(session, state.id, updates)
        else:
            updates = server.fetch_flags(below_uid=known_below)
            flag_scan_uids = {u.uid for u in updates}
            with store.transaction() as session:
                result.flags_changed = q.apply_flag_updates(session, state.id, updates)

    # Ascending, no duplicates, 8 bytes per UID: a first sync of a large folder holds
    # it for the whole fetch, so never a list (or set) of ints.
    new_uids: Sequence[int] = ()
    if status.uidnext > known_below and status.exists:
        new_uids = server.search_uid_array(known_below)
    progress.folder_started(folder, len(new_uids))
    source = parallel_source(store, server, len(new_uids), parallel) if new_uids else None
    if source is not None:
        _fetch_new_in_workers(
            store, source, state.id, new_uids, now, result, progress, after_batch, parallel
        )
    elif new_uids:
        _fetch_new(store, server, state.id, new_uids, now, result, progress, after_batch)

    # Expunge detection: old UIDs can only disappear, so equal counts mean nothing vanished.
    new_below_uidnext = sum(1 for uid in new_uids if uid < status.uidnext)
    if known_count and status.exists != known_count + new_below_uidnext:
        on_server: Container[int]
        if flag_scan_uids is not None:
            on_server = flag_scan_uids
        else:
            on_server = AscendingUids(server.search_uid_array(1))
        with store.transaction() as session:
            stored = q.stored_uids(session, state.id, below=known_below)
            gone = {uid for uid in stored if uid not in on_server}
            result.expunged = q.delete_uids(session, state.id, gone)

    with store.transaction() as session:
        if leftovers:
            # Leftover rows of messages expunged since: every UID from known_below up to
            # the highest one the server had then was in new_uids if it still existed.
            highest = max(status.uidnext - 1, max(new_uids, default=0))
            stale = q.stored_uids_between(session, state.id, known_below, highest)
            fetched = AscendingUids(new_uids)
            q.delete_uids(session, state.id, {uid for uid in stale if uid not in fetched})
        q.set_folder_position(
            session,
            state.id,
            synced_uidnext=max(status.uidnext, known_below, max(new_uids, default=0) + 1),
            highestmodseq=status.highestmodseq,
            server_exists=status.exists,
            synced_at=now,
        )
    result.seconds = time.monotonic() - started
    progress.folder_finished(result)
    return result


class _BatchWriter:
    """Writes fetched batches on a second thread so the DB work overlaps the fetching.

    sqlite3 and psycopg release the GIL while the database works, so this recovers most
    of the insert time. Each batch commits with its resume position; a failure stops
    writing (later batches are drained, not written) and is re-raised in the caller.
    """

    def __init__(self, store: Store, folder_id: int, now: datetime) -> None:
        self._store, self._folder_id, self._now = store, folder_id, now
        self._queue: Queue[list[IndexedMessage] | None] = Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = Thread(target=self._run, name="mailhygiene-index-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue
            if not batch:  # every message of the batch was expunged since the search
                continue
            try:
                with self._store.transaction() as session:
                    q.insert_messages(session, self._folder_id, batch, self._now)
                    q.set_folder_position(
                        session, self._folder_id, synced_uidnext=max(m.uid for m in batch) + 1
                    )
            except BaseException as error:
                self._error = error

    def put(self, batch: list[IndexedMessage]) -> None:
        self.raise_if_failed()
        self._queue.put(batch)

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait until every queued batch is written (also on Ctrl-C: they are complete)."""
        self._queue.put(None)
        self._thread.join()


def _fetch_new(
    store: Store,
    server: MailServer,
    folder_id: int,
    new_uids: Sequence[int],
    now: datetime,
    result: FolderSyncResult,
    progress: SyncProgress,
    after_batch: Callable[[], None] | None,
) -> None:
    writer = _BatchWriter(store, folder_id, now)
    try:
        for batch in server.fetch_index(new_uids):
            writer.put(batch)
            result.new += len(batch)
            for message in batch:
                for kind in message.problems:
                    result.problems[kind] = result.problems.get(kind, 0) + 1
            progress.fetched(len(batch))
            if after_batch is not None:
                after_batch()
    finally:
        writer.close()
    writer.raise_if_failed()


def _fetch_new_in_workers(
    store: Store,
    server: RawIndexSource,
    folder_id: int,
    new_uids: Sequence[int],
    now: datetime,
    result: FolderSyncResult,
    progress: SyncProgress,
    after_batch: Callable[[], None] | None,
    parallel: Parallelism,
) -> None:
    def committed(batch: BatchOutcome) -> None:
        result.new += batch.count
        for kind, count in batch.problems.items():
            result.problems[kind] = result.problems.get(kind, 0) + count
        progress.fetched(batch.count)
        if after_batch is not None:
            after_batch()

    index_in_workers(
        store, server, folder_id, new_uids, now, workers=parallel.workers, on_batch=committed
    )
