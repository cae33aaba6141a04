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


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """One message a plan will move or delete, identified as the server knows it."""

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

    def identity_line(self) -> str:
        return (
            f"{self.folder}\t{self.uidvalidity}\t{self.uid}\t{self.message_id}\t"
            f"{self.size}\t{self.action.value}"
        )


_HASH_LINES = 10_000


def content_hash(
    *, kind: PlanKind, account: str, policy_hash: str, items: Iterable[PlannedMessage]
) -> str:
    """sha256 over the plan's identity: kind, account, policy and every item's identity."""
    digest = hashlib.sha256()
    digest.update(f"{kind.value}\n{account}\n{policy_hash}\n".encode())
    lines = sorted(item.identity_line() for item in items)
    for start in range(0, len(lines), _HASH_LINES):  # the same bytes as line by line
        chunk = "".join(line + "\n" for line in lines[start : start + _HASH_LINES])
        digest.update(chunk.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def plan_ref(created_at: datetime, token: str) -> str:
    """A short, readable, unique reference such as ``P-20261123-1a2b3c``."""
    return f"P-{created_at:%Y%m%d}-{token}"
