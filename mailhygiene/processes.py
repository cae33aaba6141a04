"""Worker processes: when work is worth spreading over them, and how to start them safely.

Python runs one thread at a time, so CPU-bound work on a large mailbox (parsing headers
at an initial sync, judging every message after a change of ``rules.toml``) uses one
core unless it runs in other processes. Workers are started with ``spawn``, never
``fork``: the parent may run threads (rich's progress refresh, imaplib's reader), and a
forked child would inherit their locks held. Each worker opens the database itself
(``open_store(store.url, schema=store.schema, migrate=False)``), which is why only a
``Store.shareable`` database qualifies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

PARALLEL_THRESHOLD = 20_000

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Two workers, or one on a single-core machine: the parent needs a core too."""
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Parallelism:
    """When and how widely to work in worker processes (``workers=0``: never)."""

    workers: int = field(default_factory=default_workers)
    threshold: int = PARALLEL_THRESHOLD

    def applies(self, count: int, *, shareable: bool) -> bool:
        """Whether ``count`` items are worth workers, on a database they can open too, in
        a process that may start them (a daemonic one, such as a ``run --all-accounts``
        worker, may not)."""
        if multiprocessing.current_process().daemon:
            return False
        return self.workers >= 1 and count >= self.threshold and shareable


def map_in_workers(
    function: Callable[[T], R],
    tasks: Iterable[T],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
) -> Iterator[R]:
    """``map(function, tasks)`` over ``workers`` spawned processes, results in task order.

    ``initializer(*initargs)`` runs once in each worker first (open the database there).
    Every task is handed out at once (keep them few and small: ids, not rows). A worker's
    error is raised here as itself; the tasks not yet started are then dropped, as they
    are when the caller stops iterating. Workers ignore Ctrl-C (the parent decides) and
    end as soon as the parent is gone.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(initializer, initargs),
    )
    try:
        # why: ProcessPoolExecutor spawns its workers as tasks are submitted
        with main_module_hidden(), children_ignore_sigint():
            futures = [pool.submit(function, task) for task in tasks]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    end_with_parent()
    initializer(*initargs)


def end_with_parent() -> None:
    """End this worker process as soon as its parent is gone (killed, crashed): nobody
    would read what it produces, and it could wait forever for work. An open
    transaction rolls back."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: BaseProcess) -> None:
    wait([parent.sentinel])
    os._exit(0)


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start spawned workers without re-running the caller's main module in them.

    ``spawn`` re-imports the parent's ``__main__`` in every child so that objects defined
    there can be unpickled. The workers need none (their code and arguments live in
    mailhygiene), and the re-import would cost an import of the whole CLI per worker
    (over a second of CPU) or re-run a script that lacks an ``if __name__ ==
    "__main__"`` guard. So while the workers start, ``__main__`` is a blank module.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Start workers with SIGINT ignored from their first instruction.

    A Ctrl-C reaches the terminal's whole process group. A spawned worker only ignores it
    once its own code runs, after a second of imports in which it would die with a
    traceback; an ignored signal stays ignored across ``exec``, so the workers are
    started while the parent ignores it. A Ctrl-C in that short window is lost (the
    command can be stopped again a moment later).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
