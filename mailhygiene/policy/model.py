"""The retention policy's value types: what we know about a message, the policy, the verdict.

Everything here is frozen and pure: no clock, no I/O beyond loading a time zone by name.
``config`` builds these from ``rules.toml``; ``store`` builds ``MessageFacts``; ``decide``
turns the two into a ``Verdict``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

from mailhygiene.policy.durations import Duration, DurationUnit

__all__ = [
    "EXTEND_ONLY",
    "LOCK_MODES",
    "Action",
    "Anchor",
    "CaseLink",
    "Duration",
    "DurationUnit",
    "Matcher",
    "MessageFacts",
    "Policy",
    "PurgeAction",
    "Reason",
    "ReasonKind",
    "RetentionRule",
    "Verdict",
    "load_zone",
]


def _require_aware(value: datetime | None, what: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``; ``ValueError`` naming it when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError) as error:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Stockholm'"
        ) from error


@dataclass(frozen=True, slots=True)
class CaseLink:
    """A complaint case (reklamationsärende) the message's thread is linked to."""

    ref: str
    is_open: bool
    closed_at: datetime | None  # tz-aware; None while open

    def __post_init__(self) -> None:
        _require_aware(self.closed_at, f"case {self.ref} closed_at")


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the index knows about one message, as far as retention is concerned."""

    message_key: int
    account: str
    folder: str
    internal_date: datetime | None  # IMAP INTERNALDATE: when the server received it
    date_header: datetime | None  # None when missing or unparseable
    size: int
    from_addr: str  # lower-cased address, "" if none
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    subject: str
    headers: Mapping[str, str]  # lower-case names: list-id, auto-submitted, x-mailer, …
    keywords: frozenset[str]  # IMAP flags and keywords: "\\Seen", "$Reklamation"
    cases: tuple[CaseLink, ...] = ()
    holds: tuple[str, ...] = ()  # names of legal holds whose query matches this message

    def __post_init__(self) -> None:
        _require_aware(self.internal_date, "internal_date")
        _require_aware(self.date_header, "date_header")


class Action(StrEnum):
    KEEP = "keep"
    PURGE = "purge"


class ReasonKind(StrEnum):
    HOLD = "hold"
    CASE_OPEN = "case_open"
    CASE_CLOSED = "case_closed"
    RULE = "rule"
    DEFAULT = "default"
    NO_DATE = "no_date"
    CASE_KEYWORD = "case_keyword"


class Reason:
    """One thing that bears on a message's fate: which hold, case or rule, and what it says.

    ``detail`` may be given as a function that writes it: planning decides about every
    message of a mailbox but shows the words for few, and formatting dates for all of
    them would cost more than the decision (see ``scripts/bench.py``). It is written
    once, on first use. Equality and hashing go by kind, name and detail.
    """

    __slots__ = ("_detail", "kind", "name")

    def __init__(self, kind: ReasonKind, name: str, detail: str | Callable[[], str]) -> None:
        self.kind = kind
        self.name = name
        self._detail = detail

    @property
    def detail(self) -> str:
        detail = self._detail
        if not isinstance(detail, str):
            detail = self._detail = detail()
        return detail

    def _key(self) -> tuple[ReasonKind, str, str]:
        return (self.kind, self.name, self.detail)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reason):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Reason(kind={self.kind!r}, name={self.name!r}, detail={self.detail!r})"

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one message at one instant.

    ``keep_until`` is the instant (UTC) the message becomes purgeable given the facts as
    they are; None when that is not foreseeable: held, in an open case, marked with the
    case keyword, undated, or dated so late the period ends beyond the year 9999.
    ``reasons[0]`` is the deciding reason; the rest are every other reason that applies.
    """

    action: Action
    keep_until: datetime | None
    reasons: tuple[Reason, ...]

    def explain(self) -> str:
        """Multi-line "why" text: the action, then one line per reason."""
        until = "indefinitely" if self.keep_until is None else self.keep_until.isoformat()
        head = f"{self.action.value} (purgeable from: {until})"
        return "\n".join([head, *(f"  - {reason}" for reason in self.reasons)])


class Anchor(StrEnum):
    """Where a retention period starts counting.

    ``END_OF_YEAR`` is the first instant of the next calendar year in the policy time
    zone (1 Jan 00:00 local): the exact end of the year the message was received in, so
    "7y from end of year" for mail from 2024 is purgeable from 2032-01-01 00:00 local,
    i.e. kept through all of 31 Dec 2031.
    """

    RECEIVED = "received"
    END_OF_YEAR = "end_of_year"

    def describe(self) -> str:
        if self is Anchor.END_OF_YEAR:
            return "from the end of the calendar year it was received in"
        return "from when it was received"


class PurgeAction(StrEnum):
    MOVE = "move"  # to the quarantine folder; deleted from there after the grace period
    DELETE = "delete"  # \Deleted + UID EXPUNGE directly


class Matcher(Protocol):
    """One condition of a retention rule; see ``mailhygiene.policy.rules`` for the kinds."""

    NAME: ClassVar[str]

    def matches(self, facts: MessageFacts) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Keep matching mail for ``keep`` counted from ``anchor``; all matchers must match."""

    name: str
    keep: Duration
    anchor: Anchor
    matchers: tuple[Matcher, ...]
    description: str = ""
    source: str = ""  # where the period comes from, e.g. "bokföringslagen 7 kap. 2 §"
    _checks: tuple[Callable[[MessageFacts], bool], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a retention rule needs a name")
        if not self.matchers:
            # A rule without conditions would silently replace the default for all mail.
            raise ValueError(f"rule {self.name!r} has no conditions; use the default instead")
        # why: bound methods looked up once; planning asks every rule about every message
        object.__setattr__(self, "_checks", tuple(matcher.matches for matcher in self.matchers))

    def matches(self, facts: MessageFacts) -> bool:
        for check in self._checks:  # noqa: SIM110 - a loop; all() over a generator is slower
            if not check(facts):
                return False
        return True

    def describe(self) -> str:
        """E.g. ``bookkeeping: keep 7 years from the end of … when subject matches …``."""
        conditions = " and ".join(matcher.describe() for matcher in self.matchers)
        period = f"{self.keep.describe()} {self.anchor.describe()}"
        text = f"{self.name}: keep {period} when {conditions}"
        if self.source:
            text += f" [{self.source}]"
        return text


_DAYS_180 = Duration(180, DurationUnit.DAYS)
_DAYS_90 = Duration(90, DurationUnit.DAYS)
_DAYS_30 = Duration(30, DurationUnit.DAYS)
_DAYS_7 = Duration(7, DurationUnit.DAYS)
_YEARS_10 = Duration(10, DurationUnit.YEARS)

EXTEND_ONLY = "extend-only"
"""``[policy] lock``: once adopted, only changes that keep mail at least as long are adopted."""
LOCK_MODES = ("", EXTEND_ONLY)


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole retention policy; defaults are the PROMIX policy without special rules."""

    timezone: str = "Europe/Stockholm"
    default_keep: Duration = _DAYS_180
    rules: tuple[RetentionRule, ...] = ()
    case_keep_after_close: Duration = _DAYS_90
    case_pattern: str = r"REK-\d{4}-\d{4}"
    case_auto_create: bool = True
    case_keyword: str = "$Reklamation"
    purge_action: PurgeAction = PurgeAction.MOVE
    quarantine_folder: str = "Quarantine"
    quarantine_grace: Duration = _DAYS_30
    auto_approve_limit: int = 500
    plan_ttl: Duration = _DAYS_7
    lock: str = ""  # "" or EXTEND_ONLY; enforced when a version is adopted (governance)
    tombstone_keep: Duration = _YEARS_10  # how long proof of disposition is kept
    source_hash: str = ""  # sha256 of the rules file bytes; "" when built in code
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    retention_key: str = field(init=False, repr=False, compare=False)
    retention_reads_keywords: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", load_zone(self.timezone))
        object.__setattr__(self, "purge_action", PurgeAction(self.purge_action))
        # why: verdicts stored in the index (``mailhygiene.retention``) are valid for one
        # retention part of the policy; a changed comment in rules.toml must not count,
        # and a policy built in code (no source hash) must still be told apart.
        retention_part = repr((self.timezone, self.default_keep, self.rules))
        object.__setattr__(
            self, "retention_key", hashlib.sha256(retention_part.encode()).hexdigest()
        )
        object.__setattr__(
            self,
            "retention_reads_keywords",
            any(matcher.NAME == "keyword" for rule in self.rules for matcher in rule.matchers),
        )
        if self.lock not in LOCK_MODES:
            raise ValueError(f"unknown lock {self.lock!r}; use {EXTEND_ONLY!r} or none")
        if self.auto_approve_limit < 0:
            raise ValueError(f"auto_approve_limit cannot be negative: {self.auto_approve_limit}")
        try:
            re.compile(self.case_pattern)
        except re.error as error:
            raise ValueError(f"invalid case pattern {self.case_pattern!r}: {error}") from error
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)

    def describe(self) -> str:
        """The policy in words, one line per setting and rule (for ``rules check``)."""
        action = (
            f"move to {self.quarantine_folder!r}, deleted after {self.quarantine_grace.describe()}"
            if self.purge_action is PurgeAction.MOVE
            else "delete directly (no quarantine)"
        )
        lines = [
            f"time zone: {self.timezone}",
            f"default retention: {self.default_keep.describe()} from when it was received",
            f"complaint cases: kept while open and {self.case_keep_after_close.describe()} "
            f"after closing; case numbers /{self.case_pattern}/ "
            f"({'auto-created' if self.case_auto_create else 'not auto-created'}); "
            f"keyword {self.case_keyword} keeps mail",
            f"purge: {action}; scheduled runs auto-approve up to "
            f"{self.auto_approve_limit} messages; plans expire after {self.plan_ttl.describe()}",
            f"records of deleted mail (tombstones) kept {self.tombstone_keep.describe()}",
        ]
        if self.lock == EXTEND_ONLY:
            lines.append(
                "lock: extend-only (once adopted, a new version may only keep mail longer)"
            )
        lines += [f"rule {rule.describe()}" for rule in self.rules]
        return "\n".join(lines)
