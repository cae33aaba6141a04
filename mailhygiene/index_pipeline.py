"""Index a large batch of new mail on several processes: fetch here, parse and insert there.

Python runs one thread at a time, so in one process fetching, header parsing and the
database insert take turns. For a large fetch (an initial sync) this module keeps the
IMAP connection in the calling process, which only fetches — raw ``imaplib`` data per
batch, lists of bytes and tuples that pickle cheaply — and hands each batch to one of N
worker processes (``index_worker``). A worker parses it and inserts it over its own
database connection, opened with the driver alone (``Store.driver_target``).

Workers are started with ``spawn``, never ``fork``: the parent may run threads (rich's
progress refresh, imaplib's reader), and a forked child would inherit their locks held.
Workers ignore SIGINT from their start, so a Ctrl-C in the terminal reaches only the
parent, which stops fetching, lets the workers finish the batches they already hold
(they are complete), records the resume position and re-raises. A second Ctrl-C ends
the workers at once; their open transactions roll back.

Resume: a worker commits its batch alone, and batches finish in any order. Only the
parent moves ``folders.synced_uidnext``, and only over the unbroken run of committed
batches from the first, so everything below it is always indexed. Rows a crash leaves
above it are replaced when their batch is fetched again (``insert_messages`` upserts on
``(folder_id, uid)``), and ``index`` does not count them as known (see
``_sync_folder``). With SQLite (one writer at a time), workers take turns through a
shared lock instead of polling on the busy timeout.

A worker's error reaches the parent as the same exception (our errors are picklable),
with the worker's traceback as a note; later batches are not submitted.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Lock
from types import FrameType
from typing import Any, Protocol, runtime_checkable

from mailhygiene.errors import MailhygieneError
from mailhygiene.index_worker import Parser, Result, Task, WorkerConfig, worker_main
from mailhygiene.processes import Parallelism, children_ignore_sigint, main_module_hidden
from mailhygiene.store import index_queries as q
from mailhygiene.store.session import Store

_IN_FLIGHT_PER_WORKER = 4  # batches handed out but not yet committed, per worker
_POLL_S = 0.2
_RECORD_EVERY_S = 0.25
_STOP_WAIT_S = 10.0

RawBatch = tuple[list[int], list[Any]]


@runtime_checkable
class RawIndexSource(Protocol):
    """A mail server that can hand over unparsed index data (``ImapMailServer`` can)."""

    def fetch_index_raw(self, uids: Sequence[int]) -> Iterator[RawBatch]: ...

    @property
    def raw_index_parser(self) -> Parser: ...


def parallel_source(
    store: Store, server: object, new_count: int, parallel: Parallelism
) -> RawIndexSource | None:
    """``server`` as a raw source when ``new_count`` messages should be indexed in workers:
    enough of them, workers allowed, a database other processes can open, and a server
    that hands over raw data; otherwise None."""
    if not parallel.applies(new_count, shareable=store.shareable):
        return None
    return server if isinstance(server, RawIndexSource) else None


@dataclass
class BatchOutcome:
    """What the parent learns of one committed batch."""

    count: int
    problems: dict[str, int]


class _WorkerDied(MailhygieneError):
    """A worker process ended without saying why (killed, out of memory, crashed)."""


def index_in_workers(
    store: Store,
    source: RawIndexSource,
    folder_id: int,
    uids: Sequence[int],
    now: datetime,
    *,
    workers: int,
    on_batch: Callable[[BatchOutcome], None],
) -> None:
    """Fetch ``uids`` here and parse + insert them in ``workers`` processes.

    ``on_batch`` runs here for every committed batch (progress, counts). Returns when
    every batch is committed and ``synced_uidnext`` is past the last one; raises the
    first error (a worker's, the fetch's, or KeyboardInterrupt) after recording how far
    the committed batches reach."""
    pipeline = _Pipeline(store, folder_id, now, source.raw_index_parser, workers, on_batch)
    pipeline.run(source.fetch_index_raw(uids))


class _Pipeline:
    def __init__(
        self,
        store: Store,
        folder_id: int,
        now: datetime,
        parser: Parser,
        workers: int,
        on_batch: Callable[[BatchOutcome], None],
    ) -> None:
        self._store, self._folder_id, self._on_batch = store, folder_id, on_batch
        context = multiprocessing.get_context("spawn")
        self._tasks: Queue[Task] = context.Queue()
        self._results: Queue[Result] = context.Queue()
        self._lock: Lock | None = context.Lock() if store.is_sqlite else None
        config = WorkerConfig(store.driver_target, folder_id, now, parser)
        self._processes: list[BaseProcess] = [
            context.Process(
                target=worker_main,
                args=(config, self._tasks, self._results, self._lock),
                name=f"mailhygiene-index-{n + 1}",
                daemon=True,
            )
            for n in range(max(1, workers))
        ]
        self._limit = _IN_FLIGHT_PER_WORKER * len(self._processes)
        self._outstanding: set[int] = set()  # handed to the workers, no answer yet
        self._last_uid: dict[int, int] = {}  # every batch not yet under the prefix
        self._committed: set[int] = set()  # committed, but after a gap
        self._prefix = 0  # batches 0 … prefix-1 are committed
        self._position = 0  # synced_uidnext those batches allow
        self._recorded, self._recorded_at = 0, 0.0  # what was written, and when
        self._error: BaseException | None = None

    # -- parent loop ----------------------------------------------------------------------
    def run(self, batches: Iterator[RawBatch]) -> None:
        with main_module_hidden(), children_ignore_sigint():
            for process in self._processes:
                process.start()
        failure: BaseException | None = None
        try:
            with _deferred_sigint() as interrupted:
                try:
                    self._feed(batches, interrupted)
                    self._drain()
                except _WorkerDied:
                    self._abort()
                    raise
                except BaseException:
                    # The fetch failed (or Ctrl-C without our handler): the batches the
                    # workers hold are complete, so let them commit and record how far
                    # that reaches. A (second) Ctrl-C while waiting ends them at once.
                    try:
                        self._drain()
                    except BaseException:
                        self._abort()
                        raise
                    raise
                if interrupted():
                    raise KeyboardInterrupt
        except BaseException as error:
            failure = error
            raise
        finally:
            self._stop()
            try:
                self._record(final=True)  # the workers are gone: no write turn to wait for
            except Exception:
                if failure is None:
                    raise
                # Already failing (the database, likely): report that first error; the
                # resume position stays where it was last recorded, which is safe.
        if self._error is not None:
            raise self._error

    def _feed(self, batches: Iterator[RawBatch], interrupted: Callable[[], bool]) -> None:
        for seq, (uids, data) in enumerate(batches):
            while len(self._outstanding) >= self._limit and self._error is None:
                self._receive()
            if self._error is not None or interrupted():
                break
            if not uids:
                continue
            self._last_uid[seq] = uids[-1]
            self._tasks.put((seq, data))
            self._outstanding.add(seq)
            if interrupted():
                break

    def _drain(self) -> None:
        while self._outstanding:
            self._receive()

    def _receive(self) -> None:
        try:
            kind, seq, payload = self._results.get(timeout=_POLL_S)
        except queue.Empty:
            self._check_workers()
            return
        self._outstanding.discard(seq)
        if kind == "done":
            count, problems = payload
            self._committed.add(seq)
            self._advance()
            self._on_batch(BatchOutcome(count, problems))
            self._check_workers()
            return
        error, remote_traceback = payload
        error.add_note(f"in index worker process:\n{remote_traceback}")
        if self._error is None:
            self._error = error

    def _check_workers(self) -> None:
        for process in self._processes:
            if process.exitcode is not None:
                if self._error is not None:
                    raise self._error  # the worker reported why before it ended
                raise _WorkerDied(
                    f"an index worker process ended unexpectedly (exit code "
                    f"{process.exitcode}); run the sync again: it resumes where it stopped"
                )

    def _advance(self) -> None:
        """Extend the prefix over the batches now committed without a gap."""
        while self._prefix in self._committed:
            self._committed.discard(self._prefix)
            self._position = self._last_uid.pop(self._prefix) + 1
            self._prefix += 1
        self._record(final=False)

    def _record(self, *, final: bool) -> None:
        """Write the prefix's end as ``synced_uidnext``: at the end, and meanwhile every
        ``_RECORD_EVERY_S`` when the SQLite write turn is free (never wait for it here:
        the fetch would stall behind a worker's insert)."""
        if self._position <= self._recorded:
            return
        if not final and time.monotonic() - self._recorded_at < _RECORD_EVERY_S:
            return
        if not final and self._lock is not None and not self._lock.acquire(block=False):
            return
        try:
            with self._store.transaction() as session:
                q.set_folder_position(session, self._folder_id, synced_uidnext=self._position)
        finally:
            if not final and self._lock is not None:
                self._lock.release()
        self._recorded, self._recorded_at = self._position, time.monotonic()

    def _abort(self) -> None:
        """Stop now: end the workers (their open transactions roll back)."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(_STOP_WAIT_S)

    def _stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                self._tasks.put(None)
        for process in self._processes:
            process.join(_STOP_WAIT_S)
            if process.is_alive():
                process.terminate()
                process.join(_STOP_WAIT_S)
        self._tasks.cancel_join_thread()  # nobody is left to read what was not read
        self._tasks.close()
        self._results.close()


@contextmanager
def _deferred_sigint() -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C into a flag the loop checks between batches (so no IMAP
    response or queue message is cut in half); a second one raises at once. Only where
    Python's default handler is installed (the main thread of a normal program)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return
    hit = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal hit
        if hit:
            raise KeyboardInterrupt
        hit = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = [
    "BatchOutcome",
    "RawIndexSource",
    "index_in_workers",
    "parallel_source",
]
