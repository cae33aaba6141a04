"""``decide(facts, policy, now)``: keep or purge one message, and why.

The priority order (``shared/DESIGN.md``, the first that applies decides):

1. a legal hold keeps, indefinitely;
2. an open complaint case, the case keyword on the message, or a per-case keyword naming
   a case the message's thread is not linked to, keeps indefinitely;
3. closed cases keep until the latest ``closed_at + case_keep_after_close``;
4. retention rules: for matching mail they *replace* the default, and among several
   matching rules the latest end wins (so a "newsletters 30d" rule can purge sooner than
   the default, but never overrides a longer matching rule such as bookkeeping);
5. otherwise the default retention.

Periods count from INTERNALDATE, else the Date header; with neither, the message is kept
and the verdict says so (``NO_DATE``). All calendar arithmetic happens on the wall clock
of the policy time zone.

``keep_until`` is the instant the message becomes purgeable given the facts as they are,
i.e. the latest end over *every* reason that applies, not only the deciding one: an
invoice in a closed complaint case is not purgeable when the case's period ends, but when
bookkeeping's does. It does not depend on ``now``; only the action and the choice of the
deciding reason do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from mailhygiene.policy.durations import Duration
from mailhygiene.policy.model import (
    Action,
    Anchor,
    CaseLink,
    MessageFacts,
    Policy,
    Reason,
    ReasonKind,
    RetentionRule,
    Verdict,
)

__all__ = ["RetentionVerdict", "decide", "retention_verdict"]

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)  # sorts "indefinitely" after every date
_BEYOND = "beyond the year 9999: kept"


@dataclass(frozen=True, slots=True)
class _Finding:
    reason: Reason
    until: datetime | None  # None: keeps indefinitely


def decide(facts: MessageFacts, policy: Policy, now: datetime) -> Verdict:
    """Decide whether ``facts`` may be purged at ``now`` under ``policy``.

    Raises ``ValueError`` when ``now`` is naive: a guessed time zone could purge early.
    """
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    zone = policy.zone
    retention = _retention(facts, policy, zone)
    if facts.holds or facts.cases or facts.keywords:
        findings = [
            *_holds(facts),
            *_open_cases(facts, policy),
            *_closed_cases(facts.cases, policy, zone),
            *retention,
        ]
    else:
        findings = retention

    keep_until: datetime | None
    if any(finding.until is None for finding in findings):
        keep_until = None
    else:
        keep_until = max(finding.until for finding in findings if finding.until is not None)

    if keep_until is not None and now >= keep_until:
        action = Action.PURGE
        deciding = retention[0]
    else:
        action = Action.KEEP
        deciding = next(f for f in findings if f.until is None or f.until > now)
    reasons = (deciding.reason, *(f.reason for f in findings if f is not deciding))
    return Verdict(action=action, keep_until=keep_until, reasons=reasons)


@dataclass(frozen=True, slots=True)
class RetentionVerdict:
    """What the retention rules alone (steps 4 and 5) say about a message.

    For a message with no hold, no case link and no case keyword this *is* the decision:
    ``decide`` purges it at ``now`` exactly when ``keep_until`` is not None and
    ``now >= keep_until``, with ``reason`` deciding either way (a property test checks
    this). It does not depend on ``now``, cases or holds, so it can be stored with the
    message and reused until the policy's retention part (``Policy.retention_key``) or,
    when a rule tests keywords, the message's flags change.
    """

    reason: Reason
    keep_until: datetime | None


def retention_verdict(facts: MessageFacts, policy: Policy) -> RetentionVerdict:
    """The retention rules' verdict on ``facts``, ignoring holds and cases."""
    winner = _retention(facts, policy, policy.zone)[0]
    return RetentionVerdict(winner.reason, winner.until)


def _holds(facts: MessageFacts) -> list[_Finding]:
    return [
        _Finding(
            Reason(ReasonKind.HOLD, name, "legal hold covers this message: kept until released"),
            None,
        )
        for name in sorted(set(facts.holds))
    ]


def _open_cases(facts: MessageFacts, policy: Policy) -> list[_Finding]:
    findings = [
        _Finding(Reason(ReasonKind.CASE_OPEN, ref, "complaint case is open: kept"), None)
        for ref in sorted({case.ref for case in facts.cases if case.is_open})
    ]
    wanted = policy.case_keyword.casefold()
    if wanted and facts.keywords:
        findings.extend(_keyword_findings(facts, policy, wanted))
    return findings


def _keyword_findings(facts: MessageFacts, policy: Policy, wanted: str) -> list[_Finding]:
    """What the case keywords on a message keep, compared case-insensitively (a client
    may respell a keyword).

    The plain keyword is a person's mark and keeps for as long as it is there, even on a
    thread linked to a closed case: staff may have marked a late reply to protect it.
    mailhygiene mirrors only per-case keywords (``$Reklamation_REF``); such a keyword
    keeps nothing by itself when the thread is linked to case REF (the case decides), but
    keeps while it names a case the thread is not linked to: marked in a client, and not
    linked (yet) by a sync.
    """
    prefix = wanted + "_"
    linked: set[str] | None = None
    findings: list[_Finding] = []
    for keyword in sorted(facts.keywords):
        folded = keyword.casefold()
        if folded == wanted:
            detail = "marked with the case keyword in a mail client: kept until the mark is removed"
            findings.append(
                _Finding(Reason(ReasonKind.CASE_KEYWORD, policy.case_keyword, detail), None)
            )
        elif folded.startswith(prefix) and len(folded) > len(prefix):
            if linked is None:
                linked = {case.ref.casefold() for case in facts.cases}
            named = folded[len(prefix) :]
            if named not in linked:
                detail = (
                    f"marked for case {named.upper()} in a mail client, but not linked to it: "
                    "kept until it is linked (next sync) or the mark is removed"
                )
                findings.append(_Finding(Reason(ReasonKind.CASE_KEYWORD, keyword, detail), None))
    return findings


def _closed_cases(cases: tuple[CaseLink, ...], policy: Policy, zone: ZoneInfo) -> list[_Finding]:
    findings = []
    keep = policy.case_keep_after_close
    for case in _last_closings(cases):
        if case.closed_at is None:
            # A closed case without a closing date cannot be counted from: keep, don't guess.
            detail = "complaint case is closed but its closing date is unknown: kept"
            findings.append(_Finding(Reason(ReasonKind.CASE_CLOSED, case.ref, detail), None))
            continue
        until = _add(keep, case.closed_at.astimezone(zone))
        detail = (
            f"complaint case closed {_local(case.closed_at, zone)}: kept {keep.describe()} "
            f"after closing → {_until(until, zone)}"
        )
        findings.append(_Finding(Reason(ReasonKind.CASE_CLOSED, case.ref, detail), until))
    findings.sort(key=lambda f: (f.until or _END_OF_TIME, f.reason.name), reverse=True)
    return findings


def _last_closings(cases: tuple[CaseLink, ...]) -> list[CaseLink]:
    """One link per closed case: the same case may be linked through several threads,
    and should two links disagree on when it closed, the later closing counts (an
    unknown date counts as latest: it keeps)."""
    latest: dict[str, CaseLink] = {}
    for case in cases:
        if case.is_open:
            continue
        known = latest.get(case.ref)
        if known is None or _closes_later(case, known):
            latest[case.ref] = case
    return list(latest.values())


def _closes_later(case: CaseLink, other: CaseLink) -> bool:
    if case.closed_at is None or other.closed_at is None:
        return other.closed_at is not None
    return case.closed_at > other.closed_at


def _retention(facts: MessageFacts, policy: Policy, zone: ZoneInfo) -> list[_Finding]:
    """The rule or default findings; the first one is the one whose period ends last."""
    matching = [rule for rule in policy.rules if rule.matches(facts)]
    base = facts.internal_date or facts.date_header
    if base is None:
        counted = " and ".join(repr(rule.name) for rule in matching) or "the default retention"
        detail = f"no INTERNALDATE and no Date header, so {counted} cannot be counted: kept"
        no_date = _Finding(Reason(ReasonKind.NO_DATE, "date", detail), None)
        detail = "matches, but the message has no date to count from"
        return [
            no_date,
            *(_Finding(Reason(ReasonKind.RULE, r.name, detail), None) for r in matching),
        ]

    basis = "received" if facts.internal_date is not None else "sent (Date header)"
    if not matching:
        until = _add(policy.default_keep, _local_start(base, Anchor.RECEIVED, zone))

        def default_detail() -> str:
            return (
                f"kept {policy.default_keep.describe()} from {basis} {_local(base, zone)} "
                f"→ {_until(until, zone)}"
            )

        return [_Finding(Reason(ReasonKind.DEFAULT, "default", default_detail), until)]

    findings = [_rule_finding(rule, base, basis, zone) for rule in matching]
    # Retention beats deletion: the rule keeping longest decides; ties go to file order.
    winner = max(findings, key=lambda f: f.until or _END_OF_TIME)
    return [winner, *(f for f in findings if f is not winner)]


def _rule_finding(rule: RetentionRule, base: datetime, basis: str, zone: ZoneInfo) -> _Finding:
    start = _local_start(base, rule.anchor, zone)
    until = _add(rule.keep, start)

    def detail() -> str:
        keep = rule.keep.describe()
        if rule.anchor is Anchor.END_OF_YEAR:
            year = base.year if start is None else start.year - 1
            through = (
                _BEYOND
                if until is None
                else f"through {(until.astimezone(zone) - timedelta(microseconds=1)).date()}"
            )
            return f"kept {keep} from the end of {year} ({basis} {_local(base, zone)}) → {through}"
        return f"kept {keep} from {basis} {_local(base, zone)} → {_until(until, zone)}"

    return _Finding(Reason(ReasonKind.RULE, rule.name, detail), until)


def _local_start(base: datetime, anchor: Anchor, zone: ZoneInfo) -> datetime | None:
    """The instant a period starts, on the policy zone's wall clock; None if out of range."""
    try:
        local = base.astimezone(zone)
        if anchor is Anchor.END_OF_YEAR:
            return datetime(local.year + 1, 1, 1, tzinfo=zone)
    except (OverflowError, ValueError):
        return None
    return local


def _add(keep: Duration, start: datetime | None) -> datetime | None:
    """``start + keep`` in UTC, or None when it falls outside ``datetime``'s range.

    Such dates come from forged or broken headers (year 9999); None keeps the message
    indefinitely and the reason says "beyond the year 9999".
    """
    if start is None:
        return None
    try:
        return keep.add_to(start).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _local(dt: datetime, zone: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM`` on the policy zone's wall clock (UTC if out of range there)."""
    try:
        return dt.astimezone(zone).isoformat(sep=" ", timespec="minutes")[:16]
    except (OverflowError, ValueError):
        return dt.astimezone(UTC).isoformat(sep=" ", timespec="minutes")[:16] + " UTC"


def _until(until: datetime | None, zone: ZoneInfo) -> str:
    if until is None:
        return _BEYOND
    return f"until {_local(until, zone)} {zone.key}"
