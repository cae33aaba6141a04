"""SQL for legal holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailhygiene.store.models import Hold


def get_hold(session: Session, name: str) -> Hold | None:
    return session.scalar(select(Hold).where(Hold.name == name))


def add_hold(
    session: Session, *, name: str, query: str, reason: str, actor: str, now: datetime
) -> Hold:
    hold = Hold(name=name, query=query, reason=reason, placed_at=now, placed_by=actor)
    session.add(hold)
    session.flush()
    return hold


def list_holds(session: Session, include_released: bool) -> list[Hold]:
    query = select(Hold).order_by(Hold.placed_at)
    if not include_released:
        query = query.where(Hold.released_at.is_(None))
    return list(session.scalars(query))


__all__ = ["Hold", "add_hold", "get_hold", "list_holds"]
