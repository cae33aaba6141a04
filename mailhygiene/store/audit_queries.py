"""SQL for the audit chain: the writers' lock, the head, appending, reading in seq order."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime

from sqlalchemy import false, func, select, update
from sqlalchemy.orm import Session

from mailhygiene.audit.events import AuditEntry, ChainLink, link_entry
from mailhygiene.store.models import AuditEvent

# pg_advisory_xact_lock key for "one chain writer at a time": the bytes of "mh-audit".
CHAIN_LOCK_KEY = 0x6D682D6175646974

_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.tag,
    AuditEvent.subject,
    AuditEvent.data,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


def lock_chain(session: Session) -> None:
    """Make this transaction the only chain writer until it commits or rolls back.

    Must run before the head is read, or two writers could both extend the same head
    and fork the chain (the unique ``seq`` would then fail one of them).

    PostgreSQL: a transaction-scoped advisory lock; under READ COMMITTED the next
    statement sees whatever the previous holder committed.

    SQLite: a write statement (matching no rows) takes the database's single write
    lock, waiting for the busy timeout if another writer holds it. The Python driver
    opens its transaction only just before that first write, so the transaction starts
    as a writer — the effect of ``BEGIN IMMEDIATE`` — and every later read in it sees
    the newest commit. A transaction that has already read in an older snapshot gets
    "database is locked" here instead of forking the chain.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))
    elif dialect == "sqlite":
        session.execute(
            update(AuditEvent).where(false()).values(seq=AuditEvent.seq),
            execution_options={"synchronize_session": False},
        )
    else:  # pragma: no cover - open_store accepts only these two
        raise NotImplementedError(f"no chain lock for the {dialect} dialect")


def last_link(session: Session) -> ChainLink | None:
    """The entry with the highest seq (the head), or None for an empty log."""
    row = session.execute(select(*_COLUMNS).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return ChainLink(*row) if row is not None else None


def insert_link(
    session: Session, entry: AuditEntry, *, data_json: str, prev_hash: str, hash_: str
) -> None:
    session.add(
        AuditEvent(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            tag=entry.tag,
            subject=entry.subject,
            data=data_json,
            prev_hash=prev_hash,
            hash=hash_,
        )
    )
    session.flush()


def iter_links(session: Session, *, batch: int = 1000) -> Generator[ChainLink, None, None]:
    """Every stored entry in seq order, fetched ``batch`` rows at a time; close it when done."""
    result = session.execute(
        select(*_COLUMNS).order_by(AuditEvent.seq).execution_options(yield_per=batch)
    )
    try:
        for row in result:
            yield ChainLink(*row)
    finally:
        # A reader that stops early (verify at the first bad entry) must not leave a
        # server-side cursor open on PostgreSQL.
        result.close()


def select_entries(
    session: Session,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    tag: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries newest first. ``tag`` without a colon matches a whole source (``plan``)."""
    query = select(*_COLUMNS).order_by(AuditEvent.seq.desc())
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if tag is not None:
        if ":" in tag:
            query = query.where(AuditEvent.tag == tag)
        else:
            query = query.where(AuditEvent.tag.startswith(f"{tag}:", autoescape=True))
    if limit is not None:
        query = query.limit(limit)
    return [_readable_entry(ChainLink(*row)) for row in session.execute(query)]


def _readable_entry(link: ChainLink) -> AuditEntry:
    """The entry, or its raw data text when someone made it unreadable (verify says so)."""
    try:
        return link_entry(link)
    except ValueError:
        data = {"unreadable_data": link.data_json}
        return AuditEntry(link.seq, link.at, link.actor, link.tag, link.subject, data)


__all__ = [
    "CHAIN_LOCK_KEY",
    "insert_link",
    "iter_links",
    "last_link",
    "lock_chain",
    "select_entries",
]
