"""SQLAlchemy 2 typed models: the index of what is on the server, and our own records.

All instants are stored as UTC (``UTCDateTime``); nothing here knows a time zone.
Schema changes go through Alembic (``store/migrations``); ``tests`` fail when the
models and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores tz-aware datetimes as naive UTC; returns them tz-aware (UTC).

    SQLite has no time zones and PostgreSQL's ``timestamptz`` depends on the session
    zone; naive UTC in both keeps comparisons in SQL identical on both back ends.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass tz-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Account(Base):
    """An IMAP account as named in the settings file (credentials are never stored)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255))
    capabilities: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    last_sync_at: Mapped[datetime | None]


class Folder(Base):
    """One IMAP mailbox of an account and the sync state needed to resume incrementally."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    # Every UID below ``synced_uidnext`` has been fetched (or is known to be gone);
    # a sync interrupted halfway resumes from here.
    synced_uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    server_exists: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_at: Mapped[datetime | None]
    missing_since: Mapped[datetime | None]


class Message(Base):
    """What the index knows of one message on the server. Bodies are never stored."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_internal_date", "internal_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str] = mapped_column(String(998))
    references_ids: Mapped[str] = mapped_column(Text)
    thread_index: Mapped[str] = mapped_column(String(500))
    thread_topic: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    from_addr: Mapped[str] = mapped_column(String(320), index=True)
    from_name: Mapped[str] = mapped_column(Text)
    to_addrs: Mapped[str] = mapped_column(Text)
    cc_addrs: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str] = mapped_column(Text)
    date_header: Mapped[datetime | None]
    date_raw: Mapped[str | None] = mapped_column(Text)
    internal_date: Mapped[datetime | None]
    size: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    extra_headers: Mapped[str] = mapped_column(Text)
    problems: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[str | None] = mapped_column(String(100), index=True)
    indexed_at: Mapped[datetime]


__all__ = ["Account", "Base", "Folder", "Message", "UTCDateTime"]
