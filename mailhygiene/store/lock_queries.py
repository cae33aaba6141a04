"""Per-account run locks with a lease, so a crashed holder never blocks forever."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailhygiene.store.models import RunLock


def lock_holder(session: Session, account: str) -> RunLock | None:
    return session.scalar(select(RunLock).where(RunLock.account == account))


def try_acquire(
    session: Session,
    account: str,
    holder: str,
    now: datetime,
    lease_until: datetime,
    *,
    holder_is_dead: bool = False,
) -> bool:
    """Take the lock if it is free, expired, ours, or held by a process known to be dead."""
    current = session.scalar(select(RunLock).where(RunLock.account == account).with_for_update())
    if current is None:
        try:
            with session.begin_nested():
                session.add(
                    RunLock(
                        account=account, holder=holder, acquired_at=now, lease_until=lease_until
                    )
                )
        except IntegrityError:
            return False
        return True
    if current.holder == holder or current.lease_until <= now or holder_is_dead:
        current.holder, current.acquired_at, current.lease_until = holder, now, lease_until
        return True
    return False


def release(session: Session, account: str, holder: str) -> None:
    session.execute(delete(RunLock).where(RunLock.account == account, RunLock.holder == holder))


def renew(session: Session, account: str, holder: str, lease_until: datetime) -> bool:
    result = session.execute(
        update(RunLock)
        .where(RunLock.account == account, RunLock.holder == holder)
        .values(lease_until=lease_until)
    )
    return bool(cast(CursorResult[Any], result).rowcount)
