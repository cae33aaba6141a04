"""Append to and verify the hash-chained audit log.

``append`` joins the caller's transaction, so an event is recorded exactly when the
change it describes commits. It first makes the transaction the only chain writer
(``audit_queries.lock_chain``), then reads the head and writes the next entry, so
concurrent writers — several CLI processes, the scheduler — queue up instead of forking
the chain. Hold the transaction briefly after appending: other writers wait for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime

from mailhygiene.audit.events import (
    GENESIS_HASH,
    AuditEntry,
    AuditTag,
    ChainHead,
    VerifyResult,
    canonical_json,
    chain_hash,
    normalise_data,
    verify_chain,
)
from mailhygiene.store import audit_queries
from mailhygiene.store.session import Session, Store


def append(
    session: Session,
    *,
    actor: str,
    tag: AuditTag,
    subject: str,
    data: Mapping[str, object],
    at: datetime,
) -> AuditEntry:
    """Record one event in the caller's transaction and return it as stored."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given to audit.append; pass tz-aware UTC")
    if not actor:
        raise ValueError("an audit entry needs an actor")
    payload = normalise_data(data)
    audit_queries.lock_chain(session)
    last = audit_queries.last_link(session)
    prev_hash = last.hash if last is not None else GENESIS_HASH
    entry = AuditEntry(
        seq=last.seq + 1 if last is not None else 1,
        at=at.astimezone(UTC),
        actor=actor,
        tag=AuditTag(tag).value,
        subject=subject,
        data=payload,
    )
    audit_queries.insert_link(
        session,
        entry,
        data_json=canonical_json(payload),
        prev_hash=prev_hash,
        hash_=chain_hash(prev_hash, entry),
    )
    return entry


def record(
    store: Store,
    *,
    actor: str,
    tag: AuditTag,
    subject: str,
    data: Mapping[str, object],
    at: datetime,
) -> AuditEntry:
    """``append`` in a transaction of its own, for events that are not part of a change."""
    with store.transaction() as session:
        return append(session, actor=actor, tag=tag, subject=subject, data=data, at=at)


def verify(store: Store, *, anchor: ChainHead | None = None) -> VerifyResult:
    """Recompute the whole chain; see ``audit.events.verify_chain`` for what it detects."""
    with store.transaction() as session, closing(audit_queries.iter_links(session)) as links:
        return verify_chain(links, anchor=anchor)


def head(store: Store) -> ChainHead | None:
    """The newest entry's seq, hash and time, to keep as an anchor; None when empty."""
    with store.transaction() as session:
        last = audit_queries.last_link(session)
    return ChainHead(last.seq, last.hash, last.at) if last is not None else None


def query(
    store: Store,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    tag: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries newest first, filtered; ``tag`` may be a whole source such as ``plan``."""
    with store.transaction() as session:
        return audit_queries.select_entries(session, since=since, actor=actor, tag=tag, limit=limit)


__all__ = ["append", "head", "query", "record", "verify"]
