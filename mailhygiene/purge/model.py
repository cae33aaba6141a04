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

    def stored_item(self) -> StoredItem:
        """This item as ``digest_items`` reads stored ones."""
        return (
            self.folder,
            self.uidvalidity,
            self.uid,
            self.message_id,
            self.size,
            self.action.value,
            self.reason_kind,
            self.reason_name,
        )


def content_hash(
    *, kind: PlanKind, account: str, policy_hash: str, items: Iterable[PlannedMessage]
) -> str:
    """sha256 over the plan's identity: kind, account, policy and every item's identity."""
    stored = (item.stored_item() for item in items)
    return digest_items(
        kind=kind, account=account, policy_hash=policy_hash, items=stored
    ).content_hash


StoredItem = tuple[str, int, int, str, int, str, str, str]
"""A stored plan item as ``digest_items`` reads it: folder, UIDVALIDITY, UID, Message-ID,
size, action (its plain value), reason kind, reason name."""


@dataclass(frozen=True)
class ItemsDigest:
    """What a plan's stored items add up to: their content hash, and totals."""

    content_hash: str
    count: int
    bytes: int
    by_folder: dict[str, list[int]]  # folder → [messages, bytes]
    by_reason: dict[str, list[int]]  # "kind:name" → [messages, bytes]


def digest_items(
    *, kind: PlanKind, account: str, policy_hash: str, items: Iterable[StoredItem]
) -> ItemsDigest:
    """The content hash and the totals by folder and reason of stored items, in one pass and
    without building plan items; the one place that says which bytes of an item the hash
    covers."""
    lines: list[str] = []
    groups: dict[tuple[str, str, str], list[int]] = {}
    for folder, validity, uid, message_id, size, action, reason_kind, reason_name in items:
        lines.append(f"{folder}\t{validity}\t{uid}\t{message_id}\t{size}\t{action}")
        group = (folder, reason_kind, reason_name)
        totals = groups.get(group)
        if totals is None:
            groups[group] = [1, size]
        else:
            totals[0] += 1
            totals[1] += size
    by_folder: dict[str, list[int]] = {}
    by_reason: dict[str, list[int]] = {}
    for (folder, reason_kind, reason_name), (messages, size) in groups.items():
        for counts, name in ((by_folder, folder), (by_reason, f"{reason_kind}:{reason_name}")):
            totals = counts.setdefault(name, [0, 0])
            totals[0] += messages
            totals[1] += size
    return ItemsDigest(
        content_hash=_hash_lines(kind, account, policy_hash, lines),
        count=len(lines),
        bytes=sum(size for _messages, size in by_folder.values()),
        by_folder=by_folder,
        by_reason=by_reason,
    )


_HASH_LINES = 10_000


def _hash_lines(kind: PlanKind, account: str, policy_hash: str, lines: list[str]) -> str:
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
