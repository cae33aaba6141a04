"""Audit tags, entries, their canonical encoding and the hash chain (pure: no I/O).

Each entry is hashed together with the hash of the entry before it::

    hash(n) = sha256( hash(n-1) + "\\n" + canonical(entry n) )      hash(0) = 64 zeros

``canonical`` is compact JSON with sorted keys over ``seq``, ``at`` (UTC, ISO 8601 with
microseconds and ``Z``), ``actor``, ``tag``, ``subject`` and ``data``. Changing, removing
or reordering any entry changes every later hash, so ``verify_chain`` finds the first
entry that no longer fits. Rewriting the whole chain from the edit onwards is only
caught against an anchor (``ChainHead``) kept somewhere else — ``mailhygiene audit
anchor`` prints one for safe keeping.

Entries hold as little personal data as their purpose allows: a message is referred to
by ``message_ref`` (folder, UID, size, date and a SHA-256 of its Message-ID), never by
its Message-ID, addresses or subject.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Any

GENESIS_HASH = "0" * 64


class AuditTag(StrEnum):
    """What happened, as ``source:action``."""

    SYNC_SUMMARY = "sync:summary"
    CASE_OPEN = "case:open"
    CASE_CLOSE = "case:close"
    CASE_REOPEN = "case:reopen"
    CASE_LINK = "case:link"
    CASE_UNLINK = "case:unlink"
    HOLD_PLACE = "hold:place"
    HOLD_RELEASE = "hold:release"
    PLAN_CREATE = "plan:create"
    PLAN_APPROVE = "plan:approve"
    PLAN_REJECT = "plan:reject"
    PURGE_EXECUTE = "purge:execute"
    PURGE_BATCH = "purge:batch"
    PURGE_SKIP = "purge:skip"
    QUARANTINE_RESTORE = "quarantine:restore"
    QUARANTINE_EXPUNGE = "quarantine:expunge"
    SUBJECT_REQUEST = "subject:request"
    SUBJECT_EXPORT = "subject:export"
    SUBJECT_ERASE = "subject:erase"
    SUBJECT_RESTRICT = "subject:restrict"
    SUBJECT_UNRESTRICT = "subject:unrestrict"
    USER_ADD = "user:add"
    USER_DISABLE = "user:disable"
    USER_ENABLE = "user:enable"
    USER_ROLE = "user:role"
    USER_PASSWORD = "user:password"  # noqa: S105 - the name of an event, not a secret
    AUTH_REFUSED = "auth:refused"
    RULES_ADOPT = "rules:adopt"
    RUN_SCHEDULED = "run:scheduled"
    BATCH_OPEN = "batch:open"
    BATCH_RECLAIM = "batch:reclaim"
    BATCH_FAIL = "batch:fail"
    BATCH_DONE = "batch:done"

    @property
    def source(self) -> str:
        return self.value.split(":", 1)[0]


def tag_sources() -> frozenset[str]:
    """The ``source`` parts of every tag (``plan``, ``user`` …), for filtering by prefix."""
    return frozenset(tag.source for tag in AuditTag)


@dataclass(frozen=True)
class AuditEntry:
    """One event: who did what to which subject, when, with a few JSON-able details.

    ``tag`` is a plain string so entries written by other versions still read back.
    """

    seq: int
    at: datetime
    actor: str
    tag: str
    subject: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ChainLink:
    """A stored entry exactly as read back: ``data_json`` is the stored text, unparsed."""

    seq: int
    at: datetime
    actor: str
    tag: str
    subject: str
    data_json: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainHead:
    """The newest entry's seq and hash: an anchor to keep outside the database."""

    seq: int
    hash: str
    at: datetime


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of walking the chain; ``count`` entries were found intact."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head: ChainHead | None = None


def utc_iso(at: datetime) -> str:
    """``2026-03-01T11:00:00.000000Z``: one spelling per instant, whatever its zone."""
    if at.tzinfo is None:
        raise ValueError("naive datetime in an audit entry; pass tz-aware UTC")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical_json)
    raise TypeError(f"cannot record {type(value).__name__} in the audit log; pass JSON values")


def canonical_json(value: object) -> str:
    """Compact JSON with sorted keys: equal values always encode to the same text."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def normalise_data(data: Mapping[str, object]) -> dict[str, Any]:
    """``data`` as it reads back from storage (dates as text, tuples as lists …).

    The entry ``append`` returns must hash the same as the stored one, so the data is
    taken through its canonical JSON once before it is hashed.
    """
    loaded = json.loads(canonical_json(dict(data)))
    if not isinstance(loaded, dict):  # pragma: no cover - dict() above guarantees it
        raise TypeError("audit data must be a mapping")
    return loaded


def encode_entry(entry: AuditEntry) -> str:
    """The canonical text of ``entry``: what the chain hash covers."""
    return canonical_json(
        {
            "seq": entry.seq,
            "at": utc_iso(entry.at),
            "actor": entry.actor,
            "tag": entry.tag,
            "subject": entry.subject,
            "data": entry.data,
        }
    )


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    """SHA-256 (hex) binding ``entry`` to everything before it through ``prev_hash``."""
    if len(prev_hash) != 64:
        raise ValueError(f"previous hash must be 64 hex digits, got {prev_hash!r}")
    return hashlib.sha256(f"{prev_hash}\n{encode_entry(entry)}".encode()).hexdigest()


def link_entry(link: ChainLink) -> AuditEntry:
    """The entry a stored link holds; ``ValueError`` when its data is not JSON."""
    data = json.loads(link.data_json)
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    return AuditEntry(link.seq, link.at, link.actor, link.tag, link.subject, data)


def verify_chain(links: Iterable[ChainLink], *, anchor: ChainHead | None = None) -> VerifyResult:
    """Walk ``links`` in seq order and report the first one that does not fit.

    Finds edited entries (hash mismatch), deleted ones (a gap in seq), reordered or
    swapped ones (the previous hash no longer matches) and, given an ``anchor``,
    entries removed from the end or a chain rebuilt after an edit.
    """
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    head: ChainHead | None = None
    anchored_hash: str | None = None
    for link in links:
        problem = _link_problem(link, expected_seq, prev_hash)
        if problem is not None:
            bad_seq = min(link.seq, expected_seq)
            return VerifyResult(False, count, bad_seq, problem, head)
        if anchor is not None and link.seq == anchor.seq:
            anchored_hash = link.hash
        prev_hash, expected_seq, count = link.hash, expected_seq + 1, count + 1
        head = ChainHead(link.seq, link.hash, link.at)
    if anchor is not None:
        if anchor.seq >= expected_seq:
            # why: the newest entries are gone, which no hash inside the chain can show
            return VerifyResult(
                False,
                count,
                expected_seq,
                f"the log ends at seq {expected_seq - 1} but the anchor was taken at seq "
                f"{anchor.seq}: entries {expected_seq}..{anchor.seq} were removed",
                head,
            )
        if anchored_hash != anchor.hash:
            # why: a chain rebuilt after an edit is self-consistent; only the anchor shows it
            return VerifyResult(
                False,
                count,
                anchor.seq,
                f"entry {anchor.seq} does not match the anchor: the chain was rewritten",
                head,
            )
    return VerifyResult(True, count, None, None, head)


def _link_problem(link: ChainLink, expected_seq: int, prev_hash: str) -> str | None:
    """Why ``link`` cannot follow an entry with hash ``prev_hash`` at this position."""
    if link.seq > expected_seq:
        missing = (
            f"entry {expected_seq} is"
            if link.seq == expected_seq + 1
            else f"entries {expected_seq}..{link.seq - 1} are"
        )
        return f"{missing} missing (the next entry is {link.seq})"
    if link.seq < expected_seq:
        return f"entry {link.seq} appears out of order after entry {expected_seq - 1}"
    if link.prev_hash != prev_hash:
        return (
            f"entry {link.seq} does not follow entry {link.seq - 1}"
            " (its previous hash differs): entries were removed, swapped or reordered"
        )
    try:
        entry = link_entry(link)
    except ValueError:
        return f"entry {link.seq} has data that is not a JSON object: it was edited"
    if canonical_json(entry.data) != link.data_json:
        return f"entry {link.seq} has data that is not in canonical form: it was edited"
    if chain_hash(prev_hash, entry) != link.hash:
        return f"entry {link.seq} was changed after it was written (hash mismatch)"
    return None


def message_id_digest(message_id: str) -> str | None:
    """SHA-256 (hex) of a Message-ID as indexed; ``None`` when there is none."""
    value = message_id.strip()
    return hashlib.sha256(value.encode()).hexdigest() if value else None


def message_ref(
    folder: str, uid: int, message_id: str, size: int, date: datetime | None
) -> dict[str, object]:
    """Enough to find a message again and prove which one it was, without personal data.

    The Message-ID is replaced by its SHA-256: an auditor holding the message can match
    it, while the log alone reveals no addresses (Message-IDs often contain them).
    """
    return {
        "folder": folder,
        "uid": uid,
        "message_id_sha256": message_id_digest(message_id),
        "size": size,
        "date": utc_iso(date) if date is not None else None,
    }


__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditTag",
    "ChainHead",
    "ChainLink",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "encode_entry",
    "link_entry",
    "message_id_digest",
    "message_ref",
    "normalise_data",
    "tag_sources",
    "utc_iso",
    "verify_chain",
]
