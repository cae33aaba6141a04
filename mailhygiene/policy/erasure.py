"""What may stop a data-subject erasure: holds, cases and legal retention obligations.

A person's request to erase their mail (GDPR art. 17) overrides the *default*
retention and every rule that merely lets mail live for a while, but not:

1. a legal hold (art. 17(3)(e): legal claims) — kept until the hold is released;
2. an open complaint case linked to the thread, or the case keyword on the message —
   the case is still being handled;
3. a closed case within ``case_keep_after_close`` after closing;
4. a **legal obligation rule**: a retention rule that names its ``source`` *and* keeps
   mail longer than the default retention (art. 17(3)(b): compliance with a legal
   obligation, e.g. bokföringslagen 7 kap. 2 § for invoices). A rule that keeps mail
   *shorter* than the default (newsletters 30d) is housekeeping, not an obligation,
   whatever its source says; a longer rule without a source is a preference, not a
   duty, and does not bar erasure either. Undated mail that such a rule matches is
   kept, since its period cannot be counted.

The judgement is ``decide`` itself, run under an *erasure policy*: the same policy
with only the obligation rules and a default retention of zero. Whatever that verdict
still keeps is what bars erasure, with the same reason text ``explain`` shows. Pure:
no I/O; ``purge.execute`` re-checks it at execution time and ``subjects`` plans with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from mailhygiene.policy.decide import decide
from mailhygiene.policy.durations import Duration, DurationUnit
from mailhygiene.policy.model import (
    Action,
    MessageFacts,
    Policy,
    Reason,
    ReasonKind,
    RetentionRule,
    Verdict,
)

__all__ = ["ErasureBar", "ErasureCheck", "bars_erasure"]

_ZERO = Duration(0, DurationUnit.DAYS)
_REFERENCE_YEAR = 2001  # a non-leap year: periods are compared from its 1 January


def bars_erasure(rule: RetentionRule, policy: Policy) -> bool:
    """True when ``rule`` is a legal obligation to keep: it names a source and keeps
    longer than the default retention (compared from 1 January 2001 in the policy zone)."""
    if not rule.source.strip():
        return False
    start = datetime(_REFERENCE_YEAR, 1, 1, tzinfo=policy.zone)
    return rule.keep.add_to(start) > policy.default_keep.add_to(start)


@dataclass(frozen=True, slots=True)
class ErasureBar:
    """Why a message may not be erased now, and until when (None: not foreseeable)."""

    reason: Reason
    until: datetime | None


class ErasureCheck:
    """Judges messages for erasure under one policy; build once, ask for many messages."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.obligations = tuple(rule for rule in policy.rules if bars_erasure(rule, policy))
        self._erasure_policy = replace(policy, rules=self.obligations, default_keep=_ZERO)

    def verdict(self, facts: MessageFacts, now: datetime) -> Verdict:
        """``decide`` under the erasure policy (obligation rules only, default zero)."""
        return decide(facts, self._erasure_policy, now)

    def bar(self, facts: MessageFacts, now: datetime) -> ErasureBar | None:
        """None when the message may be erased at ``now``; else what keeps it."""
        verdict = self.verdict(facts, now)
        if verdict.action is Action.PURGE:
            return None
        deciding = verdict.reasons[0]
        if deciding.kind is ReasonKind.DEFAULT:
            # why: only a zero default is left (a message dated in the future): no duty keeps it
            return None
        if deciding.kind is ReasonKind.NO_DATE and not any(
            rule.matches(facts) for rule in self.obligations
        ):
            # why: without a date only an obligation's period is uncountable; erasure wins
            return None
        return ErasureBar(reason=deciding, until=verdict.keep_until)
