"""The worker side of the parallel indexer (``index_pipeline``): parse a batch, insert it.

A worker is a fresh interpreter (``spawn``) that runs only this module. It reaches the
database through the driver alone (``store.driver``), never SQLAlchemy or the ORM: their
import cost each worker about 0.4 s of CPU per sync, on the cores the fetch needs.
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Lock
from typing import Any

from mailhygiene.errors import MailhygieneError
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.processes import end_with_parent
from mailhygiene.store.driver import DriverTarget, connect, write_messages

LOCK_WAIT_S = 60.0

Parser = Callable[[list[Any]], list[IndexedMessage]]
Task = tuple[int, list[Any]] | None
"""A batch to index, ``(sequence number, the server's raw data)``; None: stop."""
Result = tuple[str, int, Any]
"""``("done", seq, (count, problems))`` or ``("error", seq, (error, traceback text))``."""


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker is started with."""

    target: DriverTarget
    folder_id: int
    now: datetime
    parser: Parser


class _Held:
    """The SQLite write turn; a holder that died cannot block us past ``LOCK_WAIT_S``
    (the database's own busy timeout still serialises the write)."""

    def __init__(self, lock: Lock) -> None:
        self._lock = lock
        self._held = False

    def __enter__(self) -> object:
        self._held = self._lock.acquire(timeout=LOCK_WAIT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._lock.release()


def worker_main(
    config: WorkerConfig, tasks: Queue[Task], results: Queue[Result], lock: Lock | None
) -> None:
    """Parse and insert batches until told to stop (None); end with the parent.

    Each batch commits alone; an error rolls it back and is reported, and the worker
    takes the next batch (the parent stops submitting after the first error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    end_with_parent()
    try:
        connection = connect(config.target)
    except Exception as error:
        results.put(("error", -1, portable(error)))
        return
    try:
        while (task := tasks.get()) is not None:
            seq, data = task
            try:
                messages = config.parser(data)
                problems = Counter(kind for m in messages for kind in m.problems)
                turn = _Held(lock) if lock is not None else nullcontext()
                with turn:
                    try:
                        write_messages(
                            connection,
                            config.target.is_sqlite,
                            config.folder_id,
                            messages,
                            config.now,
                        )
                        connection.commit()
                    except BaseException:
                        connection.rollback()
                        raise
                results.put(("done", seq, (len(messages), dict(problems))))
            except Exception as error:
                results.put(("error", seq, portable(error)))
    finally:
        connection.close()


def portable(error: BaseException) -> tuple[BaseException, str]:
    """The error and its traceback text, as something that survives the trip to the parent."""
    text = "".join(traceback.format_exception(error)).rstrip()
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:
        substitute = MailhygieneError(f"{type(error).__name__}: {error}")
        return substitute, text
    return error, text


__all__ = ["Parser", "Result", "Task", "WorkerConfig", "portable", "worker_main"]
