"""Run batches: ``mailhygiene run --all-accounts`` over many mailboxes, processes and machines.

A batch is named by a key (default: the date in the policy's time zone, so every run
started on one day — on any machine — shares it). Every process that runs the batch
joins it, adding the accounts of its settings, and then claims accounts one at a time
until none is left (``store.run_queries``):

* Exactly once. A claim moves an account from pending to running in one transaction
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the database write lock on SQLite); the
  run marks it done in the transaction that writes its ``run:scheduled`` audit entry
  (``scheduled_run(claim=…)``). A done or failed account is never run again in the
  batch, so running the batch again does only what is left.
* Leases. While it runs an account a worker renews its claim (and the account's run
  lock) every sixth of the lease from a heartbeat thread. A worker that dies — kill -9,
  a lost machine — stops renewing; once its lease has run out the account can be
  claimed again, and the new claimer takes over the dead worker's run lock too
  (``batch:reclaim`` in the audit log). A run stopped by Ctrl-C gives its account back
  at once.
* The per-server bound. A claim holds a connection slot on its account's IMAP host
  until the worker has closed its connection; a host with ``[run]
  max_connections_per_server`` live slots (any batch, any machine) gets no new claim
  until one is freed, and workers with nothing else to claim wait for it.

Workers are processes started with ``spawn``, each with its own database connection
and IMAP connection, reporting to the parent over a pipe of its own. With one worker
the batch runs in the calling process, account after account, as ``mailhygiene run``
always did. Several machines need PostgreSQL; SQLite serves the processes of one.

Leases are wall-clock times, read here (this module is the scheduler's entry on the
worker side): they say whether a process is alive, which the simulated ``--now`` of the
runs themselves cannot.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Protocol

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.cases.service import link_after_sync
from mailhygiene.config.secrets import resolve_password
from mailhygiene.config.settings import AccountSettings
from mailhygiene.errors import ConfigError, InputError, MailhygieneError
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncProgress, SyncRequest
from mailhygiene.policy import Policy
from mailhygiene.processes import Parallelism, children_ignore_sigint, main_module_hidden
from mailhygiene.purge import lock
from mailhygiene.scheduled import RunOutcome, scheduled_run
from mailhygiene.store import run_queries
from mailhygiene.store.run_queries import BatchCounts, Claim
from mailhygiene.store.session import Store, open_store

DEFAULT_LEASE = timedelta(minutes=3)
_BEATS_PER_LEASE = 6
_MAX_POLL_S = 1.0  # how often a worker with nothing to claim looks again
_COUNTS_EVERY_S = 1.0  # how often the parent refreshes the batch's progress
_STOP_WAIT_S = 30.0  # after Ctrl-C: how long workers get to give their accounts back
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")


def wall_clock() -> datetime:
    """The real time, for leases (never the simulated ``--now``)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class BatchSpec:
    """What every worker of one invocation needs (pickled to the spawned workers).

    No passwords: each worker reads its accounts' passwords itself. ``now`` is
    ``--now``; None means the clock when each account's run starts.
    """

    key: str
    accounts: tuple[AccountSettings, ...]
    policy: Policy
    actor: str
    now: datetime | None
    max_per_server: int
    lease: timedelta = DEFAULT_LEASE

    def hosts(self) -> dict[str, str]:
        """Account name → the server key its connections count against."""
        return {account.name: server_of(account) for account in self.accounts}


@dataclass
class AccountResult:
    """One account run by this invocation: its outcome, or why it failed (one line)."""

    account: str
    outcome: RunOutcome | None = None
    error: str | None = None
    exit_code: int = 0


@dataclass
class BatchReport:
    """What this invocation did in the batch, and how far the whole batch is."""

    key: str
    results: list[AccountResult]
    counts: BatchCounts
    problems: list[str] = field(default_factory=list)  # workers that failed as a whole


class BatchView(Protocol):
    """How a batch shows its progress (the CLI's bars); every method may do nothing."""

    def counts(self, counts: BatchCounts) -> None: ...

    def account(self, name: str) -> AbstractContextManager[SyncProgress | None]:
        """Around one account run in this process (one worker): its sync progress."""
        ...


class _QuietView:
    def counts(self, counts: BatchCounts) -> None:
        return None

    def account(self, name: str) -> AbstractContextManager[SyncProgress | None]:
        return nullcontext(None)


def server_of(account: AccountSettings) -> str:
    """The key the per-server bound counts by: the host name, in lower case."""
    return account.host.strip().lower()


def default_batch_key(now: datetime, zone: tzinfo) -> str:
    """The day of ``now`` in the policy's time zone (``2026-06-01``)."""
    return now.astimezone(zone).date().isoformat()


def check_batch_key(key: str) -> None:
    """Refuse a key that would not read well in logs and the audit (spaces, quotes …)."""
    if not _KEY_RE.fullmatch(key):
        raise InputError(
            f"--batch {key!r} is not a usable batch key; use up to 100 letters, digits "
            "and . _ : + - (for example 2026-06-01 or 2026-06-01T02)"
        )


def join_batch(store: Store, spec: BatchSpec) -> BatchCounts:
    """Create the batch or join it, adding this machine's accounts it lacks."""
    if not spec.accounts:
        raise ConfigError("no accounts are configured; add an [accounts.NAME] table")
    at = wall_clock()
    with store.transaction() as session:
        created, added = run_queries.join_batch(
            session, spec.key, spec.hosts(), actor=spec.actor, at=at
        )
        if created:
            audit.append(
                session,
                actor=spec.actor,
                tag=AuditTag.BATCH_OPEN,
                subject=spec.key,
                data={"accounts": added, "by": lock.this_process()},
                at=spec.now or at,
            )
        return run_queries.counts(session, spec.key)


def batch_counts(store: Store, key: str) -> BatchCounts:
    with store.transaction() as session:
        return run_queries.counts(session, key)


def run_batch(
    store: Store, spec: BatchSpec, *, workers: int, view: BatchView | None = None
) -> BatchReport:
    """Join the batch and run its accounts here: in this process (``workers=1``) or in
    ``workers`` processes. Returns when nothing is left that this invocation could
    claim; accounts other machines are running may still be running."""
    view = view or _QuietView()
    counts = join_batch(store, spec)
    view.counts(counts)
    report = BatchReport(spec.key, [], counts)
    open_accounts = counts.pending + counts.running
    if open_accounts == 0:
        return report
    if workers > 1 and not store.shareable:
        raise InputError(
            f"--workers {workers} needs a database other processes can open (a SQLite "
            f"file or PostgreSQL), not {store.url_for_display}"
        )
    if workers <= 1:
        _Worker(store, spec, parallel=None).work(
            report=lambda result: _collect(report, result, store, view),
            progress_for=view.account,
        )
    else:
        _Pool(store, spec, min(workers, open_accounts), view, report).run()
    report.counts = batch_counts(store, spec.key)
    view.counts(report.counts)
    return report


def _collect(report: BatchReport, result: AccountResult, store: Store, view: BatchView) -> None:
    report.results.append(result)
    view.counts(batch_counts(store, report.key))


# -- one worker: claim, run, repeat ---------------------------------------------------------


class _Worker:
    """Claims accounts of the batch and runs them, one at a time, in this process."""

    def __init__(
        self,
        store: Store,
        spec: BatchSpec,
        *,
        parallel: Parallelism | None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store, self._spec, self._parallel, self._alive = store, spec, parallel, alive
        self._accounts = {account.name: account for account in spec.accounts}
        self.holder = lock.this_process()
        self._poll = min(_MAX_POLL_S, spec.lease.total_seconds() / _BEATS_PER_LEASE)

    def work(
        self,
        *,
        report: Callable[[AccountResult], None],
        progress_for: Callable[[str], AbstractContextManager[SyncProgress | None]],
        started: Callable[[str], None] = lambda _account: None,
    ) -> None:
        """Run accounts until none is left to claim (waiting while one waits for a slot)."""
        with _Heartbeat(self._store, self._spec.lease) as heartbeat:
            while self._alive():
                attempt = self._claim()
                claim = attempt.claim
                if claim is None:
                    if not attempt.waiting:
                        return
                    time.sleep(self._poll)
                    continue
                heartbeat.watch(claim)
                try:
                    started(claim.account)
                    with progress_for(claim.account) as progress:
                        result = self._run(claim, progress)
                finally:
                    heartbeat.watch(None)
                report(result)

    def _claim(self) -> run_queries.ClaimAttempt:
        spec = self._spec
        with self._store.transaction() as session:
            attempt = run_queries.claim_next(
                session,
                spec.key,
                list(self._accounts),
                holder=self.holder,
                clock=wall_clock,
                lease=spec.lease,
                max_per_host=spec.max_per_server,
            )
        claim = attempt.claim
        if claim is not None and claim.stale_holder is not None:
            audit.record(
                self._store,
                actor=spec.actor,
                tag=AuditTag.BATCH_RECLAIM,
                subject=claim.account,
                data={"batch": spec.key, "from": claim.stale_holder, "to": self.holder},
                at=spec.now or wall_clock(),
            )
        return attempt

    def _run(self, claim: Claim, progress: SyncProgress | None) -> AccountResult:
        account = self._accounts[claim.account]
        now = self._spec.now or wall_clock()
        request = SyncRequest(
            account=account.name,
            host=account.host,
            username=account.username,
            include=account.folders,
            exclude=account.exclude,
        )
        try:
            with ImapMailServer(account, resolve_password(account)) as server:
                outcome = scheduled_run(
                    self._store,
                    server,
                    self._spec.policy,
                    request,
                    actor=self._spec.actor,
                    now=now,
                    link_cases=link_after_sync,
                    progress=progress,
                    parallel=self._parallel,
                    claim=claim,
                )
        except KeyboardInterrupt:
            # why: not finished, so not done: whoever runs the batch next continues it
            with self._store.transaction() as session:
                run_queries.give_back(session, claim, wall_clock())
            raise
        except MailhygieneError as error:
            return self._failed(claim, now, str(error), error.exit_code)
        except Exception as error:
            # why: a bug met in one mailbox must not keep the batch's other accounts from
            # running; it is reported as that account's one line and in the audit log
            return self._failed(claim, now, f"internal error: {type(error).__name__}: {error}", 1)
        with self._store.transaction() as session:
            run_queries.release(session, claim, wall_clock())
        self._close_if_finished(now)
        return AccountResult(claim.account, outcome)

    def _failed(self, claim: Claim, now: datetime, message: str, code: int) -> AccountResult:
        with self._store.transaction() as session:
            run_queries.fail(session, claim, error=message, at=now, released=wall_clock())
            audit.append(
                session,
                actor=self._spec.actor,
                tag=AuditTag.BATCH_FAIL,
                subject=claim.account,
                data={"batch": claim.batch, "error": message},
                at=now,
            )
        self._close_if_finished(now)
        return AccountResult(claim.account, error=message, exit_code=code)

    def _close_if_finished(self, now: datetime) -> None:
        """Whoever finishes the batch's last account closes it (``batch:done``)."""
        with self._store.transaction() as session:
            closed = run_queries.close_if_finished(session, self._spec.key, wall_clock())
            if closed is not None:
                audit.append(
                    session,
                    actor=self._spec.actor,
                    tag=AuditTag.BATCH_DONE,
                    subject=self._spec.key,
                    data={"accounts": closed.total, "done": closed.done, "failed": closed.failed},
                    at=now,
                )


class _Heartbeat:
    """Renews the lease of the claim being run (and its account's run lock) from a thread."""

    def __init__(self, store: Store, lease: timedelta) -> None:
        self._store, self._lease = store, lease
        self._interval = lease.total_seconds() / _BEATS_PER_LEASE
        self._claim: Claim | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="mailhygiene-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, claim: Claim | None) -> None:
        with self._guard:
            self._claim = claim

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._guard:
                claim = self._claim
            if claim is None:
                continue
            now = wall_clock()
            try:
                with self._store.transaction() as session:
                    run_queries.renew(session, claim, now + self._lease)
                lock.renew_lease(self._store, claim.account, claim.holder, now + lock.LEASE)
            except Exception:  # noqa: S112
                # why: a missed renewal is retried at the next beat (the lease outlasts
                # five); a database that stays away fails the run itself, which reports it
                continue


# -- several workers: processes and their parent ------------------------------------------


class _Pool:
    """``workers`` spawned processes running the batch; this process shows the progress."""

    def __init__(
        self, store: Store, spec: BatchSpec, workers: int, view: BatchView, report: BatchReport
    ) -> None:
        self._store, self._spec, self._view, self._report = store, spec, view, report
        self._workers = workers
        self._live: dict[Connection, BaseProcess] = {}
        self._running: dict[Connection, str] = {}  # the account each worker is on
        self._lost: dict[str, str] = {}  # account → why its worker never finished it
        self._interrupted = False  # a worker was stopped by Ctrl-C (it gave its account back)
        self._counted_at = 0.0

    def run(self) -> None:
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        # A process started with Ctrl-C ignored (a background job) keeps its workers so too.
        interruptible = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        with main_module_hidden(), children_ignore_sigint():
            for n in range(self._workers):
                receiver, sender = context.Pipe(duplex=False)
                args = (self._spec, self._store.url, self._store.schema, sender, stop)
                process = context.Process(
                    target=_worker_main,
                    args=(*args, interruptible),
                    name=f"mailhygiene-run-{n + 1}",
                    daemon=True,
                )
                process.start()
                sender.close()
                self._live[receiver] = process
        try:
            self._listen(deadline=None)
        except KeyboardInterrupt:
            stop.set()
            for worker in self._live.values():
                if worker.pid is not None and worker.is_alive():
                    os.kill(worker.pid, signal.SIGINT)
            try:
                self._listen(deadline=time.monotonic() + _STOP_WAIT_S)
            finally:
                self._end_all()
            raise
        finally:
            self._end_all()
        finished = {result.account for result in self._report.results}
        for account, why in self._lost.items():
            if account not in finished:
                self._report.results.append(AccountResult(account, error=why, exit_code=1))
        if self._interrupted:
            # The workers got the Ctrl-C (from the terminal) and gave their accounts back.
            raise KeyboardInterrupt

    def _listen(self, *, deadline: float | None) -> None:
        while self._live:
            timeout = _COUNTS_EVERY_S
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return
            ready = wait(list(self._live), timeout=min(timeout, _COUNTS_EVERY_S))
            for receiver in [r for r in self._live if r in ready]:
                self._receive(receiver)
            if time.monotonic() - self._counted_at >= _COUNTS_EVERY_S:
                self._view.counts(batch_counts(self._store, self._spec.key))
                self._counted_at = time.monotonic()

    def _receive(self, receiver: Connection) -> None:
        try:
            kind, payload = receiver.recv()
        except Exception:
            # why: end of file, or half a message from a worker killed mid-send: either
            # way the worker is gone; what it was running is re-claimed after its lease
            self._ended(receiver)
            return
        if kind == "started":
            self._running[receiver] = payload
        elif kind == "finished":
            self._running.pop(receiver, None)
            self._report.results.append(payload)
            self._view.counts(batch_counts(self._store, self._spec.key))
            self._counted_at = time.monotonic()
        elif kind == "interrupted":
            self._running.pop(receiver, None)
            self._interrupted = True
        elif kind == "error":
            self._report.problems.append(payload)

    def _ended(self, receiver: Connection) -> None:
        process = self._live.pop(receiver)
        receiver.close()
        process.join(_STOP_WAIT_S)
        account = self._running.pop(receiver, None)
        if account is not None:
            self._lost[account] = (
                f"its worker process {process.pid} stopped (exit code {process.exitcode}) "
                f"while running it; the batch claims it again once its lease has run out "
                f"(run the batch again after {self._spec.lease.total_seconds():.0f} s)"
            )

    def _end_all(self) -> None:
        for receiver, process in list(self._live.items()):
            if process.is_alive():
                process.terminate()
            process.join(_STOP_WAIT_S)
            receiver.close()
        self._live.clear()


def _worker_main(
    spec: BatchSpec,
    url: str,
    schema: str | None,
    sender: Connection,
    stop: Event,
    interruptible: bool,
) -> None:
    """A worker process: run the batch's accounts, report each to the parent, end quietly.

    The first Ctrl-C (from the terminal, or forwarded by the parent) interrupts the run
    in progress, which gives its account back; later ones are ignored so that can finish.
    """
    if interruptible:
        signal.signal(signal.SIGINT, _interrupt_once)
    parent = multiprocessing.parent_process()

    def send(kind: str, payload: object) -> None:
        try:
            sender.send((kind, payload))
        except OSError:
            return  # the parent is gone; the claims say what was done

    def alive() -> bool:
        return not stop.is_set() and (parent is None or parent.is_alive())

    try:
        store = open_store(url, schema=schema, migrate=False)
        try:
            # Worker processes of their own (indexing, judging verdicts) would
            # oversubscribe the cores the batch's workers already use (and a daemon
            # process may not start them).
            _Worker(store, spec, parallel=Parallelism(workers=0), alive=alive).work(
                report=lambda result: send("finished", result),
                progress_for=lambda _account: nullcontext(None),
                started=lambda account: send("started", account),
            )
        finally:
            store.close()
    except KeyboardInterrupt:
        send("interrupted", None)
    except MailhygieneError as error:
        send("error", str(error))
    except Exception as error:
        # why: the parent reports it in one line; a traceback would interleave with its bar
        send("error", f"internal error in a run worker: {type(error).__name__}: {error}")
    finally:
        sender.close()


def _interrupt_once(_signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


__all__ = [
    "DEFAULT_LEASE",
    "AccountResult",
    "BatchCounts",
    "BatchReport",
    "BatchSpec",
    "BatchView",
    "batch_counts",
    "check_batch_key",
    "default_batch_key",
    "join_batch",
    "run_batch",
    "server_of",
]
