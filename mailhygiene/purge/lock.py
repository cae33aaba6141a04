"""One mutating run per account at a time (purge execution, scheduled runs).

The lock row names its holder as ``host:pid``. A holder on this host whose process no
longer exists (killed, crashed) is taken over at once; any other holder is taken over
only after its lease has run out, so a crashed run never blocks an account forever.
A run batch (``runs``) also names a holder whose batch claim ran out of lease
(``stale_holder``): that worker stopped renewing its claim, on whatever machine, so its
lock is taken over as a dead local process's is; while it works, the batch worker
renews its lock's lease together with its claim (``renew_lease``).

Inside one process the lock belongs to the thread that took it: the same thread may
enter again (``run`` holds it while it calls ``execute_plan``), another thread of the
process is refused like another process — the database row alone cannot tell them
apart, since both would be ``host:pid``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from mailhygiene.errors import SafetyRefusal
from mailhygiene.store import lock_queries
from mailhygiene.store.session import Store

LEASE = timedelta(minutes=30)
_HELD: dict[tuple[str, str], int] = {}  # (store, account) -> the holding thread's ident
_HELD_GUARD = threading.Lock()


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead(holder: str) -> bool:
    host, _, pid_text = holder.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def account_lock(
    store: Store,
    account: str,
    *,
    now: datetime,
    purpose: str,
    stale_holder: str | None = None,
) -> Iterator[None]:
    """Hold the account's run lock for the block, or refuse if another run holds it.

    Re-entrant within a thread (``run`` holds it while it calls ``execute_plan``); another
    thread of this process is refused, as another process is. ``stale_holder`` is a
    holder known to have stopped (its run-batch claim expired): its lock is taken over.
    """
    key = (store.url_for_display, account)
    me = threading.get_ident()
    with _HELD_GUARD:
        owner = _HELD.get(key)
        if owner is None:
            _HELD[key] = me  # reserved before the database is asked, so no thread races us
    if owner == me:
        yield
        return
    if owner is not None:
        # why: another thread of this process runs on the account; the row says "us" for both
        raise SafetyRefusal(
            f"another run in this process is working on account {account!r}; "
            f"refusing to {purpose} at the same time"
        )
    holder = this_process()
    try:
        with store.transaction() as session:
            current = lock_queries.lock_holder(session, account)
            # why: a holder whose batch claim expired stopped renewing it for a whole lease
            # (killed, or its machine gone); waiting out the lock's longer lease gains nothing
            dead = current is not None and (
                _is_dead(current.holder) or current.holder == stale_holder
            )
            acquired = lock_queries.try_acquire(
                session, account, holder, now, now + LEASE, holder_is_dead=dead
            )
            if not acquired:
                # why: two runs moving mail in one account at once could race each other's checks
                who = f"{current.holder}, since {current.acquired_at:%H:%M} UTC" if current else "?"
                raise SafetyRefusal(
                    f"another run ({who}) is working on account {account!r}; "
                    f"refusing to {purpose} at the same time"
                )
    except BaseException:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        raise
    try:
        yield
    finally:
        try:
            with store.transaction() as session:
                lock_queries.release(session, account, holder)
        finally:
            with _HELD_GUARD:  # only now: a thread reserving earlier would lose its row to us
                _HELD.pop(key, None)


def renew_lease(store: Store, account: str, holder: str, until: datetime) -> bool:
    """Extend the lease of ``holder``'s lock on ``account`` to ``until``; False if not held."""
    with store.transaction() as session:
        return lock_queries.renew(session, account, holder, until)
