"""Compare two policies: every change in words, and whether it could let mail go sooner.

``compare_policies(old, new)`` lists what changed, per setting and per rule, each with
an ``Effect``:

* ``EXTENDS`` — for *every* message and every date, mail is kept at least as long
  and protected at least as well as before;
* ``WEAKENS`` — some message could be purged, or deleted for good, sooner; or a
  protection (case keyword, case detection, the lock itself) is lost;
* ``NEUTRAL`` — no bearing on how long mail is kept (texts, approval limits, plan expiry).

The extend-only lock (``governance.adopt_policy``) refuses any ``WEAKENS``. The test is
deliberately conservative: a change counts as weakening unless it is *provably*
harmless. In particular:

* periods are compared for every start date: ``6m`` is not ``>= 180d`` (a six-month
  span can be 181 days, but the proof must hold for the shortest span too: months
  are compared with days by their shortest and longest calendar length);
* moving a rule's anchor from the end of the year to the received date needs a year more;
* a removed rule always weakens (its mail may fall to a shorter rule or the default);
* an added rule, or a rule whose conditions match more mail, must keep at least as long
  as the old default, because it *replaces* the default for the mail it newly matches;
* any other change of a rule's conditions weakens: narrower or merely different
  conditions cannot be proven to still match all the mail they matched;
* a different time zone, case pattern or case keyword weakens.

Legal holds live in the database, not in ``rules.toml``; no rules change can weaken them
(``decide`` always keeps held mail first). Releasing a hold is its own audited act.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from mailhygiene.policy.durations import Duration, DurationUnit
from mailhygiene.policy.model import (
    EXTEND_ONLY,
    Anchor,
    Matcher,
    Policy,
    PurgeAction,
    RetentionRule,
)
from mailhygiene.policy.rules import (
    FolderMatcher,
    HeaderMatcher,
    KeywordMatcher,
    RecipientMatcher,
    SenderMatcher,
    SubjectMatcher,
)

__all__ = [
    "Effect",
    "PolicyChange",
    "compare_policies",
    "covers",
    "weakenings",
]


class Effect(StrEnum):
    EXTENDS = "extends"
    WEAKENS = "weakens"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One difference between two policies: what, before, after, and what it does.

    ``before`` is empty for something added, ``after`` for something removed.
    """

    subject: str
    before: str
    after: str
    effect: Effect
    why: str = ""

    def __str__(self) -> str:
        if not self.before:
            text = f"{self.subject} added: {self.after}"
        elif not self.after:
            text = f"{self.subject} removed (was: {self.before})"
        else:
            text = f"{self.subject}: {self.before} → {self.after}"
        return f"{text} [{self.effect.value}{': ' + self.why if self.why else ''}]"


def compare_policies(old: Policy, new: Policy) -> tuple[PolicyChange, ...]:
    """Every change from ``old`` to ``new``: settings first, then rules in file order."""
    return (*_settings(old, new), *_rules(old, new))


def weakenings(old: Policy, new: Policy) -> tuple[PolicyChange, ...]:
    """The changes the extend-only lock refuses; empty when ``new`` only extends ``old``."""
    return tuple(c for c in compare_policies(old, new) if c.effect is Effect.WEAKENS)


# -- periods -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Span:
    """A period as whole days or whole calendar months (weeks are days, years months)."""

    months: bool
    amount: int

    @classmethod
    def of(cls, duration: Duration) -> _Span:
        if duration.unit is DurationUnit.DAYS:
            return cls(False, duration.amount)
        if duration.unit is DurationUnit.WEEKS:
            return cls(False, duration.amount * 7)
        if duration.unit is DurationUnit.YEARS:
            return cls(True, duration.amount * 12)
        return cls(True, duration.amount)

    def plus_a_year(self) -> _Span:
        return _Span(self.months, self.amount + (12 if self.months else 366))

    def shortest_days(self) -> int:
        return _month_span_days(self.amount)[0] if self.months else self.amount

    def longest_days(self) -> int:
        return _month_span_days(self.amount)[1] if self.months else self.amount


@functools.cache
def _month_lengths() -> tuple[int, ...]:
    """Month lengths over one whole Gregorian cycle of 400 years (it then repeats)."""
    return tuple(calendar.monthrange(2000 + i // 12, i % 12 + 1)[1] for i in range(4800))


@functools.cache
def _month_span_days(months: int) -> tuple[int, int]:
    """The fewest and most days ``months`` calendar months can span, over every start.

    Adding months clamps the day to the end of a shorter month (31 Jan + 1m = 28 Feb),
    which shortens the span by the difference of the two months' lengths at most.
    """
    lengths = _month_lengths()
    cycle = len(lengths)
    prefix = [0]
    for index in range(cycle + months):
        prefix.append(prefix[-1] + lengths[index % cycle])
    shortest = min(
        prefix[s + months] - prefix[s] - max(0, lengths[s] - lengths[(s + months) % cycle])
        for s in range(cycle)
    )
    longest = max(prefix[s + months] - prefix[s] for s in range(cycle))
    return shortest, longest


def _at_least(new: _Span, old: _Span) -> bool:
    if new.months == old.months:
        return new.amount >= old.amount  # calendar addition is monotone within a unit
    return new.shortest_days() >= old.longest_days()


def covers(new: Duration, new_anchor: Anchor, old: Duration, old_anchor: Anchor) -> bool:
    """True when ``new`` counted from ``new_anchor`` ends no sooner than ``old`` from
    ``old_anchor``, for every message date.

    The end of the received year is never before the received date and at most a
    year after it, so moving the anchor later is safe and moving it earlier needs a
    year more.
    """
    if old_anchor is Anchor.END_OF_YEAR and new_anchor is Anchor.RECEIVED:
        return _at_least(_Span.of(new), _Span.of(old).plus_a_year())
    return _at_least(_Span.of(new), _Span.of(old))


def _period(keep: Duration, anchor: Anchor) -> str:
    return f"keep {keep.describe()} {anchor.describe()}"


def _duration_change(
    subject: str, old: Duration, new: Duration, *, why_shorter: str
) -> Iterator[PolicyChange]:
    if old == new:
        return
    if covers(new, Anchor.RECEIVED, old, Anchor.RECEIVED):
        yield PolicyChange(subject, old.describe(), new.describe(), Effect.EXTENDS)
    else:
        yield PolicyChange(subject, old.describe(), new.describe(), Effect.WEAKENS, why_shorter)


# -- settings ------------------------------------------------------------------------------


def _settings(old: Policy, new: Policy) -> Iterator[PolicyChange]:
    if old.timezone != new.timezone:
        yield PolicyChange(
            "time zone",
            old.timezone,
            new.timezone,
            Effect.WEAKENS,
            "dates would be counted on another clock, so some periods could end hours sooner",
        )
    yield from _duration_change(
        "default retention",
        old.default_keep,
        new.default_keep,
        why_shorter="mail no rule matches could be purged sooner",
    )
    yield from _duration_change(
        "complaint cases: kept after closing",
        old.case_keep_after_close,
        new.case_keep_after_close,
        why_shorter="mail of closed cases could be purged sooner",
    )
    if old.case_pattern != new.case_pattern:
        yield PolicyChange(
            "case number pattern",
            f"/{old.case_pattern}/",
            f"/{new.case_pattern}/",
            Effect.WEAKENS,
            "it may not recognise every case number the old pattern did, so fewer "
            "threads would be linked to cases",
        )
    if old.case_auto_create != new.case_auto_create:
        if new.case_auto_create:
            yield PolicyChange(
                "complaint cases", "not auto-created", "auto-created", Effect.EXTENDS
            )
        else:
            yield PolicyChange(
                "complaint cases",
                "auto-created",
                "not auto-created",
                Effect.WEAKENS,
                "mail quoting an unknown case number would no longer be kept as a case",
            )
    if old.case_keyword != new.case_keyword:
        yield PolicyChange(
            "case keyword",
            old.case_keyword,
            new.case_keyword,
            Effect.WEAKENS,
            f"mail staff marked {old.case_keyword} would lose its protection",
        )
    yield from _purge_settings(old, new)
    if old.lock != new.lock:
        if new.lock == EXTEND_ONLY:
            yield PolicyChange("lock", "none", EXTEND_ONLY, Effect.EXTENDS)
        else:
            yield PolicyChange(
                "lock",
                old.lock,
                new.lock or "none",
                Effect.WEAKENS,
                "removes the extend-only lock",
            )
    yield from _duration_change(
        "records of deleted mail (tombstones) kept",
        old.tombstone_keep,
        new.tombstone_keep,
        why_shorter="proof of what was deleted would be discarded sooner",
    )


def _purge_settings(old: Policy, new: Policy) -> Iterator[PolicyChange]:
    move, delete = PurgeAction.MOVE, PurgeAction.DELETE
    if old.purge_action is move and new.purge_action is delete:
        yield PolicyChange(
            "purge",
            f"move to quarantine for {old.quarantine_grace.describe()}",
            "delete directly",
            Effect.WEAKENS,
            "purged mail would be deleted for good at once instead of after the grace period",
        )
    elif old.purge_action is delete and new.purge_action is move:
        yield PolicyChange(
            "purge",
            "delete directly",
            f"move to quarantine for {new.quarantine_grace.describe()}",
            Effect.EXTENDS,
        )
    elif old.quarantine_grace != new.quarantine_grace:
        if old.purge_action is move:
            yield from _duration_change(
                "quarantine grace period",
                old.quarantine_grace,
                new.quarantine_grace,
                why_shorter="purged mail would be deleted for good sooner",
            )
        else:
            yield PolicyChange(
                "quarantine grace period",
                old.quarantine_grace.describe(),
                new.quarantine_grace.describe(),
                Effect.NEUTRAL,
                "no effect while purging deletes directly",
            )
    if old.quarantine_folder != new.quarantine_folder:
        yield PolicyChange(
            "quarantine folder",
            old.quarantine_folder,
            new.quarantine_folder,
            Effect.NEUTRAL,
            "where purged mail waits; no period changes",
        )
    if old.auto_approve_limit != new.auto_approve_limit:
        yield PolicyChange(
            "auto-approval limit",
            str(old.auto_approve_limit),
            str(new.auto_approve_limit),
            Effect.NEUTRAL,
            "who approves a plan, not how long mail is kept",
        )
    if old.plan_ttl != new.plan_ttl:
        yield PolicyChange(
            "plan expiry",
            old.plan_ttl.describe(),
            new.plan_ttl.describe(),
            Effect.NEUTRAL,
            "how long a plan may wait for approval",
        )


# -- rules ---------------------------------------------------------------------------------


def _rules(old: Policy, new: Policy) -> Iterator[PolicyChange]:
    before = {rule.name: rule for rule in old.rules}
    after = {rule.name: rule for rule in new.rules}
    for rule in old.rules:
        if rule.name not in after:
            yield PolicyChange(
                f"rule {rule.name!r}",
                rule.describe(),
                "",
                Effect.WEAKENS,
                "the mail it matched would fall to other rules or the default, "
                "which may keep it for less time",
            )
    for rule in new.rules:
        previous = before.get(rule.name)
        if previous is None:
            yield _added_rule(rule, old)
        else:
            yield from _changed_rule(previous, rule, old)


def _added_rule(rule: RetentionRule, old: Policy) -> PolicyChange:
    subject = f"rule {rule.name!r}"
    if covers(rule.keep, rule.anchor, old.default_keep, Anchor.RECEIVED):
        return PolicyChange(subject, "", rule.describe(), Effect.EXTENDS)
    return PolicyChange(
        subject,
        "",
        rule.describe(),
        Effect.WEAKENS,
        f"for mail no other rule matches it would replace the default "
        f"({old.default_keep.describe()}) with a period that can be shorter",
    )


def _changed_rule(
    old_rule: RetentionRule, rule: RetentionRule, old: Policy
) -> Iterator[PolicyChange]:
    subject = f"rule {rule.name!r}"
    if (old_rule.keep, old_rule.anchor) != (rule.keep, rule.anchor):
        before = _period(old_rule.keep, old_rule.anchor)
        after = _period(rule.keep, rule.anchor)
        if covers(rule.keep, rule.anchor, old_rule.keep, old_rule.anchor):
            yield PolicyChange(subject, before, after, Effect.EXTENDS)
        else:
            yield PolicyChange(
                subject, before, after, Effect.WEAKENS, "the mail it matches could go sooner"
            )
    if not _same_conditions(old_rule.matchers, rule.matchers):
        before = _conditions(old_rule.matchers)
        after = _conditions(rule.matchers)
        if not _wider(old_rule.matchers, rule.matchers):
            yield PolicyChange(
                subject,
                before,
                after,
                Effect.WEAKENS,
                "the conditions cannot be proven to still match all the mail they matched",
            )
        elif covers(rule.keep, rule.anchor, old.default_keep, Anchor.RECEIVED):
            yield PolicyChange(subject, before, after, Effect.EXTENDS, "matches more mail")
        else:
            yield PolicyChange(
                subject,
                before,
                after,
                Effect.WEAKENS,
                f"it would match more mail, and for that mail replace the default "
                f"({old.default_keep.describe()}) with a period that can be shorter",
            )
    for label, was, now in (
        ("description", old_rule.description, rule.description),
        ("source", old_rule.source, rule.source),
    ):
        if was != now:
            yield PolicyChange(
                f"{subject} {label}", was or "(none)", now or "(none)", Effect.NEUTRAL
            )


def _conditions(matchers: tuple[Matcher, ...]) -> str:
    return "when " + " and ".join(matcher.describe() for matcher in matchers)


def _alternatives(matcher: Matcher) -> frozenset[object] | None:
    """What a condition accepts, as alternatives any one of which suffices; None if unknown."""
    if isinstance(matcher, FolderMatcher | SenderMatcher | RecipientMatcher | SubjectMatcher):
        return frozenset(matcher.patterns)
    if isinstance(matcher, HeaderMatcher):
        return frozenset((test.name, test.pattern) for test in matcher.tests)
    if isinstance(matcher, KeywordMatcher):
        return frozenset(keyword.casefold() for keyword in matcher.keywords)
    return None


def _by_kind(matchers: tuple[Matcher, ...]) -> dict[str, frozenset[object]] | None:
    kinds: dict[str, frozenset[object]] = {}
    for matcher in matchers:
        alternatives = _alternatives(matcher)
        if alternatives is None or matcher.NAME in kinds:
            return None  # an unknown kind, or one kind twice: nothing can be proven
        kinds[matcher.NAME] = alternatives
    return kinds


def _wider(old: tuple[Matcher, ...], new: tuple[Matcher, ...]) -> bool:
    """True when ``new`` provably matches every message ``old`` matches.

    Conditions of a rule are ANDed and the alternatives within one are ORed: dropping a
    condition or adding alternatives widens; anything else might narrow.
    """
    before, after = _by_kind(old), _by_kind(new)
    if before is None or after is None:
        return False
    return all(kind in before and before[kind] <= accepted for kind, accepted in after.items())


def _same_conditions(old: tuple[Matcher, ...], new: tuple[Matcher, ...]) -> bool:
    before, after = _by_kind(old), _by_kind(new)
    if before is None or after is None:
        return old == new
    return before == after
