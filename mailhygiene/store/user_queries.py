"""SQL for users (people and service accounts) and their roles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailhygiene.store.models import User


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def count_enabled(session: Session, role: str) -> int:
    query = (
        select(func.count()).select_from(User).where(User.role == role, User.disabled.is_(False))
    )
    return session.scalar(query) or 0


def get_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def add_user(session: Session, *, name: str, role: str, actor: str, now: datetime) -> User:
    user = User(name=name, role=role, disabled=False, created_at=now, created_by=actor)
    session.add(user)
    session.flush()
    return user


__all__ = ["User", "add_user", "count_enabled", "count_users", "get_user", "list_users"]
