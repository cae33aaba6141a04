"""SQL for restrictions of processing: the records, and which messages they hide.

A restriction names a person by address; the messages it covers are found with the
same address prefilter as a data-subject search (``subject_queries.address_clause``).
Used to *hide*, a prefilter that may match a little more (a ``LIKE`` across two
neighbouring addresses) errs on the safe side: it never shows a restricted message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from mailhygiene.store.models import Message, Restriction
from mailhygiene.store.subject_queries import address_clause


def add(
    session: Session,
    *,
    ref: str,
    email: str,
    plus_addressing: bool,
    basis: str,
    request_ref: str,
    actor: str,
    now: datetime,
) -> Restriction:
    restriction = Restriction(
        ref=ref,
        email=email,
        plus_addressing=plus_addressing,
        basis=basis,
        request_ref=request_ref,
        placed_at=now,
        placed_by=actor,
    )
    session.add(restriction)
    session.flush()
    return restriction


def get(session: Session, ref: str) -> Restriction | None:
    return session.scalar(select(Restriction).where(Restriction.ref == ref))


def active_for(session: Session, email: str) -> Restriction | None:
    """The person's restriction in force, if any (one per address at a time)."""
    return session.scalar(
        select(Restriction).where(Restriction.email == email, Restriction.lifted_at.is_(None))
    )


def listing(session: Session, *, include_lifted: bool) -> list[Restriction]:
    statement = select(Restriction).order_by(Restriction.placed_at, Restriction.id)
    if not include_lifted:
        statement = statement.where(Restriction.lifted_at.is_(None))
    return list(session.scalars(statement))


def covered_count(session: Session, restriction: Restriction) -> int:
    """How many indexed messages the restriction covers now (prefilter count)."""
    clause = _covers(restriction)
    if clause is None:
        return 0
    return int(session.scalar(select(func.count(Message.id)).where(clause)) or 0)


def hidden_clause(session: Session) -> ColumnElement[bool] | None:
    """True for messages some restriction in force covers; None when none is in force."""
    clauses = [
        clause
        for restriction in listing(session, include_lifted=False)
        if (clause := _covers(restriction)) is not None
    ]
    return or_(*clauses) if clauses else None


def is_hidden(session: Session, row_ids: Sequence[int]) -> set[int]:
    """The rows among ``row_ids`` that a restriction in force covers."""
    clause = hidden_clause(session)
    if clause is None or not row_ids:
        return set()
    return set(session.scalars(select(Message.id).where(Message.id.in_(row_ids), clause)))


def _covers(restriction: Restriction) -> ColumnElement[bool] | None:
    local, _at, domain = restriction.email.rpartition("@")
    base = local.split("+", 1)[0] if restriction.plus_addressing else local
    base = base or local
    addresses = sorted({restriction.email, f"{base}@{domain}"})
    plus_of = [(base, domain)] if restriction.plus_addressing else []
    return address_clause(addresses, plus_of)
