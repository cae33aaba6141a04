"""Plans as data (pure core): what a plan holds and the hash an approval binds to.

A plan is computed once and never changes; ``execute`` only consumes it. The content
hash covers everything that decides what happens to which message, so an approval
given for one plan can never authorise a different set of messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class PlanKind(StrEnum):
    PURGE = "purge"
    ERASURE = "erasure"


class PlanStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXECUTING = "executing"
    DONE = "done"
    REJECTED = "rejected"


class ItemState(StrEnum):
    """The journal state of one planned message.

    ``IN_FLIGHT`` is written and committed *before* the server command is sent; only
    after the server answers does an item become ``DONE``. A crash leaves ``IN_FLIGHT``
    items, which a resumed run reconciles against the server before doing anything else.
    """

    PLANNED = "planned"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    SKIPPED = "skipped"


class ItemAction(StrEnum):
    MOVE = "move"
    DELETE = "delete"


class PlannedMessage(NamedTuple):
    """One message a plan will move or delete, identified as the server knows it.

    A named tuple rather than a frozen dataclass: a plan holds one per message (77k for
    a 100k mailbox), and a frozen dataclass takes about four times as long to build.
    """

    message_row: int
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    size: int
    internal_date: datetime | None
    action: ItemAction
    reason_kind: str
    reason_name: str
    reason_detail: str


HASH_LINE_COLUMNS = ("folder", "uidvalidity", "uid", "message_id", "size", "action")
"""The plan item columns the content hash covers: one line per item, these values in this
order, tab-separated (integers in decimal, the action by its value). ``hash_line`` writes
it for an item in memory; ``store.purge_queries`` has the database write it for stored
items, so a stored plan is hashed without reading its items into Python."""


def hash_line(item: PlannedMessage) -> str:
    """``item``'s line of the content hash (``HASH_LINE_COLUMNS``)."""
    return (
        f"{item.folder}\t{item.uidvalidity}\t{item.uid}\t{item.message_id}\t"
        f"{item.size}\t{item.action.value}"
    )


def content_hash(
    *, kind: PlanKind, account: str, policy_hash: str, items: Iterable[PlannedMessage]
) -> str:
    """sha256 over the plan's identity: kind, account, policy and every item's identity."""
    return hash_lines(
        kind=kind, account=account, policy_hash=policy_hash, lines=[hash_line(i) for i in items]
    )


@dataclass(frozen=True)
class ItemsDigest:
    """What a plan's items add up to: their content hash, and totals."""

    content_hash: str
    count: int
    bytes: int
    by_folder: dict[str, list[int]]  # folder → [messages, bytes]
    by_reason: dict[str, list[int]]  # "kind:name" → [messages, bytes]


ItemGroup = tuple[str, str, str, int, int]
"""Items of one folder and reason: folder, reason kind, reason name, messages, bytes."""


def digest_of(content_hash: str, groups: Iterable[ItemGroup]) -> ItemsDigest:
    """The digest of items with ``content_hash`` and these totals by folder and reason."""
    by_folder: dict[str, list[int]] = {}
    by_reason: dict[str, list[int]] = {}
    for folder, reason_kind, reason_name, messages, size in groups:
        for counts, name in ((by_folder, folder), (by_reason, f"{reason_kind}:{reason_name}")):
            totals = counts.setdefault(name, [0, 0])
            totals[0] += messages
            totals[1] += size
    return ItemsDigest(
        content_hash=content_hash,
        count=sum(messages for messages, _size in by_folder.values()),
        bytes=sum(size for _messages, size in by_folder.values()),
        by_folder=by_folder,
        by_reason=by_reason,
    )


_HASH_LINES = 10_000


def hash_lines(*, kind: PlanKind, account: str, policy_hash: str, lines: list[str]) -> str:
    """The content hash of a plan whose items have these ``hash_line``s, in any order
    (``lines`` is sorted in place)."""
    digest = hashlib.sha256()
    digest.update(f"{kind.value}\n{account}\n{policy_hash}\n".encode())
    lines.sort()
    for start in range(0, len(lines), _HASH_LINES):  # the same bytes as line by line
        chunk = "".join(line + "\n" for line in lines[start : start + _HASH_LINES])
        digest.update(chunk.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def plan_ref(created_at: datetime, token: str) -> str:
    """A short, readable, unique reference such as ``P-20261123-1a2b3c``."""
    return f"P-{created_at:%Y%m%d}-{token}"
