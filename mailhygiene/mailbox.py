"""Plain values describing what an IMAP server holds, passed between ``imap`` and ``store``.

Pure core: stdlib only. ``imap`` produces these, ``store`` persists them, services
move them from one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """A folder's state as reported by SELECT (RFC 3501 §6.3.1, RFC 7162 §3.1.2.1)."""

    name: str
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    """Everything the index keeps of one message; parsed from its header subset.

    ``problems`` lists what could not be parsed (e.g. ``"date-unparseable"``) so
    malformed mail is indexed as well as it can be and reported, never skipped.
    """

    uid: int
    flags: tuple[str, ...]
    internal_date: datetime | None
    size: int
    modseq: int | None
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    thread_index: str
    thread_topic: str
    subject: str
    from_addr: str
    from_name: str
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    reply_to: tuple[str, ...]
    date_header: datetime | None
    date_raw: str | None
    extra_headers: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """A message whose flags changed on the server (from CHANGEDSINCE or a full FLAGS scan)."""

    uid: int
    flags: tuple[str, ...]
    modseq: int | None


@dataclass(frozen=True, slots=True)
class MessageIdentity:
    """Who a UID is right now on the server: checked before anything is moved or deleted."""

    uid: int
    message_id: str
    size: int
    flags: tuple[str, ...]
    modseq: int | None
