"""SQL for run batches: joining, claiming an account (``FOR UPDATE SKIP LOCKED``), leases.

A claim is taken in one short transaction (:func:`claim_next`):

PostgreSQL: for each IMAP host with a claimable account of the batch, in host order,
take a transaction-scoped advisory lock for that host, count the host's live claims
(of every batch) and, if under the bound, take the first claimable row of that host
with ``FOR UPDATE SKIP LOCKED``. Claimers of one host queue on the advisory lock, so
two of them never both see "one slot free"; a row another transaction holds (being
claimed, renewed or finished) is skipped, never waited for. Locks are taken in host
order, so two claimers cannot deadlock.

SQLite has neither ``SKIP LOCKED`` nor advisory locks: the claim transaction starts
with a write (matching no rows), which takes the database's single write lock — the
effect of ``BEGIN IMMEDIATE`` — so claims are serialised and each sees the last.
SQLite is one machine only; several machines need PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mailhygiene.store.models import RunBatch, RunClaim

# pg_advisory_xact_lock(namespace, hashtext(host)): "claims on this host", the bytes "mh-r".
HOST_LOCK_NAMESPACE = 0x6D682D72

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass(frozen=True)
class Claim:
    """An account of a batch claimed by ``holder``; ``stale_holder`` is the worker whose
    lease on it ran out (None for a first claim)."""

    batch: str
    account: str
    holder: str
    stale_holder: str | None = None


@dataclass(frozen=True)
class ClaimAttempt:
    """What :func:`claim_next` found: a claim, or whether something is left to wait for
    (claimable accounts whose host is at its bound or whose row another claimer holds)."""

    claim: Claim | None
    waiting: bool


@dataclass(frozen=True)
class BatchCounts:
    """How far a batch is, by state of its accounts."""

    key: str
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.done + self.failed

    @property
    def finished(self) -> int:
        return self.done + self.failed


def join_batch(
    session: Session, key: str, hosts: Mapping[str, str], *, actor: str, at: datetime
) -> tuple[bool, int]:
    """Create the batch if needed and add the accounts (name → host) it lacks.

    Returns (whether this call created the batch, how many accounts it added). Safe
    against concurrent joiners: both inserts do nothing on a conflict.
    """
    created = session.scalar(
        _insert(session, RunBatch)
        .values(key=key, created_at=at, created_by=actor)
        .on_conflict_do_nothing()
        .returning(RunBatch.key)
    )
    added = 0
    for account, host in sorted(hosts.items()):
        inserted = session.scalar(
            _insert(session, RunClaim)
            .values(batch=key, account=account, host=host, state=PENDING, attempts=0)
            .on_conflict_do_nothing()
            .returning(RunClaim.account)
        )
        added += inserted is not None
    if added:
        session.execute(update(RunBatch).where(RunBatch.key == key).values(finished_at=None))
    return created is not None, added


def claim_next(
    session: Session,
    key: str,
    accounts: Collection[str],
    *,
    holder: str,
    clock: Callable[[], datetime],
    lease: timedelta,
    max_per_host: int,
) -> ClaimAttempt:
    """Claim one of ``accounts`` in the batch for ``holder``: a pending one, or a running
    one whose lease ran out — only while its host has fewer than ``max_per_host`` live
    claims. ``clock`` is the wall clock (leases are real time); ``claimed_at`` is read
    after the count, so it is later than the ``released_at`` of any claim it saw freed."""
    _serialise_on_sqlite(session)
    now = clock()
    claimable = and_(
        RunClaim.batch == key,
        RunClaim.account.in_(list(accounts)),
        or_(
            RunClaim.state == PENDING,
            and_(RunClaim.state == RUNNING, RunClaim.lease_until <= now),
        ),
    )
    hosts = session.scalars(
        select(RunClaim.host).where(claimable).distinct().order_by(RunClaim.host)
    ).all()
    for host in hosts:
        _lock_host(session, host)
        now = clock()
        if live_claims(session, host, now) >= max_per_host:
            continue
        row = session.scalars(
            select(RunClaim)
            .where(claimable, RunClaim.host == host)
            .order_by(RunClaim.account)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            continue
        stale = row.holder if row.state == RUNNING else None
        claimed_at = clock()
        row.state, row.holder, row.attempts = RUNNING, holder, row.attempts + 1
        row.claimed_at, row.lease_until, row.released_at = claimed_at, claimed_at + lease, None
        return ClaimAttempt(Claim(key, row.account, holder, stale), waiting=False)
    return ClaimAttempt(None, waiting=bool(hosts))


def live_claims(session: Session, host: str, now: datetime) -> int:
    """Claims on ``host`` (of any batch) holding a connection slot: claimed, not released,
    lease not run out."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(RunClaim)
            .where(RunClaim.host == host, _holds_slot(now))
        )
        or 0
    )


def renew(session: Session, claim: Claim, lease_until: datetime) -> bool:
    """Extend the lease while the slot is held; False when the claim is no longer ours."""
    return _changed(
        session,
        _mine(claim, RunClaim.released_at.is_(None)),
        lease_until=lease_until,
    )


def finish(session: Session, claim: Claim, *, outcome: str, at: datetime) -> bool:
    """Mark the account done (the slot stays held until :func:`release`)."""
    return _changed(
        session,
        _mine(claim, RunClaim.state == RUNNING),
        state=DONE,
        outcome=outcome,
        finished_at=at,
    )


def fail(session: Session, claim: Claim, *, error: str, at: datetime, released: datetime) -> bool:
    """Mark the account failed in this batch and free its slot."""
    return _changed(
        session,
        _mine(claim, RunClaim.state == RUNNING),
        state=FAILED,
        error=error,
        finished_at=at,
        released_at=released,
    )


def release(session: Session, claim: Claim, at: datetime) -> None:
    """Free the connection slot (the worker has closed its IMAP connection)."""
    _changed(session, _mine(claim, RunClaim.released_at.is_(None)), released_at=at)


def give_back(session: Session, claim: Claim, at: datetime) -> None:
    """An interrupted run: the account is pending again (anyone may claim it at once)."""
    release(session, claim, at)
    _changed(
        session,
        _mine(claim, RunClaim.state == RUNNING),
        state=PENDING,
        holder=None,
        claimed_at=None,
        lease_until=None,
    )


def close_if_finished(session: Session, key: str, at: datetime) -> BatchCounts | None:
    """Set the batch's ``finished_at`` when none of its accounts is pending or running;
    the counts when this call closed it, else None (open, or closed by someone else)."""
    still_open = (
        select(RunClaim.account)
        .where(RunClaim.batch == key, RunClaim.state.in_((PENDING, RUNNING)))
        .exists()
    )
    closed = _changed_rows(
        session,
        update(RunBatch)
        .where(RunBatch.key == key, RunBatch.finished_at.is_(None), ~still_open)
        .values(finished_at=at),
    )
    return counts(session, key) if closed else None


def counts(session: Session, key: str) -> BatchCounts:
    rows = session.execute(
        select(RunClaim.state, func.count()).where(RunClaim.batch == key).group_by(RunClaim.state)
    ).all()
    by_state: dict[str, int] = {state: int(n) for state, n in rows}
    return BatchCounts(
        key,
        pending=by_state.get(PENDING, 0),
        running=by_state.get(RUNNING, 0),
        done=by_state.get(DONE, 0),
        failed=by_state.get(FAILED, 0),
    )


def batch_claims(session: Session, key: str) -> list[RunClaim]:
    """Every account of the batch, by name."""
    return list(
        session.scalars(select(RunClaim).where(RunClaim.batch == key).order_by(RunClaim.account))
    )


# -- helpers ------------------------------------------------------------------------------


def _holds_slot(now: datetime) -> ColumnElement[bool]:
    return and_(
        RunClaim.holder.is_not(None),
        RunClaim.released_at.is_(None),
        RunClaim.lease_until > now,
    )


def _mine(claim: Claim, *more: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(
        RunClaim.batch == claim.batch,
        RunClaim.account == claim.account,
        RunClaim.holder == claim.holder,
        *more,
    )


def _changed(session: Session, where: ColumnElement[bool], **values: Any) -> bool:
    return bool(_changed_rows(session, update(RunClaim).where(where).values(**values)))


def _changed_rows(session: Session, statement: Any) -> int:
    return _rowcount(session.execute(statement, execution_options={"synchronize_session": False}))


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _insert(session: Session, model: type[RunBatch] | type[RunClaim]) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def _serialise_on_sqlite(session: Session) -> None:
    """SQLite: take the write lock before the first read (see the module notes)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(RunClaim).where(false()).values(state=RunClaim.state),
            execution_options={"synchronize_session": False},
        )


def _lock_host(session: Session, host: str) -> None:
    """PostgreSQL: queue with the other claimers of ``host`` until this transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(func.pg_advisory_xact_lock(HOST_LOCK_NAMESPACE, func.hashtext(host)))
        )
