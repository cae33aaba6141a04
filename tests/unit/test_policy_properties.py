"""Invariants of decide(), proved with hypothesis over random messages, policies and times.

"Retention beats deletion": protections only ever keep more, a rule at least as long as
the default never lets mail go sooner, the longest matching rule wins, and time moving
backwards never turns a keep into a purge.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.policy import (
    Action,
    Anchor,
    CaseLink,
    Duration,
    DurationUnit,
    FolderMatcher,
    HeaderMatcher,
    HeaderTest,
    KeywordMatcher,
    Matcher,
    MessageFacts,
    Policy,
    ReasonKind,
    RetentionRule,
    SenderMatcher,
    SubjectMatcher,
    Verdict,
    decide,
    retention_verdict,
)

EXAMPLES = settings(max_examples=200, deadline=None, database=None)
KEEPING = {ReasonKind.HOLD, ReasonKind.CASE_OPEN, ReasonKind.CASE_KEYWORD}

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Whole seconds over 2000-2040: one draw each (st.datetimes draws seven), so runs stay fast.
instants = st.integers(min_value=0, max_value=40 * 366 * 86400).map(
    lambda seconds: EPOCH + timedelta(seconds=seconds)
)
units = st.sampled_from(list(DurationUnit))
durations = st.builds(Duration, st.integers(min_value=1, max_value=40), units)
matchers: st.SearchStrategy[Matcher] = st.sampled_from(
    [
        FolderMatcher(("INBOX",)),
        FolderMatcher(("INBOX/*", "Junk")),
        SenderMatcher(("@bank.se",)),
        SenderMatcher(("kund@example.se", "*@list.example")),
        SubjectMatcher(("faktura",)),
        SubjectMatcher((r"rek-\d{4}", "kvitto")),
        HeaderMatcher((HeaderTest("list-id", "."),)),
        KeywordMatcher(("$Faktura",)),
    ]
)
anchors = st.sampled_from(list(Anchor))
matcher_lists = st.lists(matchers, min_size=1, max_size=2).map(tuple)
rule_counts = st.integers(min_value=0, max_value=3)


@st.composite
def rule_lists(draw: st.DrawFn) -> tuple[RetentionRule, ...]:
    return tuple(
        RetentionRule(
            name=f"rule-{index}",
            keep=draw(durations),
            anchor=draw(anchors),
            matchers=draw(matcher_lists),
        )
        for index in range(draw(rule_counts))
    )


policies = st.builds(
    Policy,
    timezone=st.sampled_from(["Europe/Stockholm", "UTC", "America/New_York", "Asia/Kolkata"]),
    default_keep=durations,
    rules=rule_lists(),
    case_keep_after_close=durations,
)


case_refs = st.sampled_from([f"REK-2024-{n:04d}" for n in range(1, 10)])
maybe_instants = st.none() | instants


@st.composite
def case_links(draw: st.DrawFn) -> CaseLink:
    ref = draw(case_refs)
    if draw(st.booleans()):
        return CaseLink(ref, is_open=True, closed_at=None)
    return CaseLink(ref, is_open=False, closed_at=draw(maybe_instants))


# Each sampled_from below is one draw over every combination, which keeps runs fast.
ENVELOPES = list(
    itertools.product(
        ["INBOX", "INBOX/Ekonomi", "Junk", "Sent"],
        ["kund@example.se", "faktura@bank.se", "news@list.example", ""],
        ["Faktura 12", "Hej", "Re: REK-2024-0001", "Ditt kvitto", ""],
        [{}, {"list-id": "<news.list.example>"}],
    )
)
KEYWORD_SETS = [
    frozenset(chosen)
    for size in range(4)
    for chosen in itertools.combinations(["\\Seen", "$Faktura", "$Junk", "$reklamation"], size)
]
HOLD_LISTS = [(), ("tvist-2024",), ("skatterevision", "tvist-2024"), ("tvist-2024", "tvist-2024")]


envelopes = st.sampled_from(ENVELOPES)
keyword_sets = st.sampled_from(KEYWORD_SETS)
hold_lists = st.sampled_from(HOLD_LISTS)
case_lists = st.lists(case_links(), max_size=3).map(tuple)


@st.composite
def message_facts_strategy(draw: st.DrawFn) -> MessageFacts:
    folder, from_addr, subject, headers = draw(envelopes)
    return MessageFacts(
        message_key=1,  # identity and size never bear on retention
        account="info@promix.se",
        folder=folder,
        internal_date=draw(maybe_instants),
        date_header=draw(maybe_instants),
        size=2048,
        from_addr=from_addr,
        to_addrs=("info@promix.se",),
        cc_addrs=(),
        subject=subject,
        headers=headers,
        keywords=draw(keyword_sets),
        cases=draw(case_lists),
        holds=draw(hold_lists),
    )


message_facts = message_facts_strategy()
unprotected = message_facts.map(
    lambda f: dataclasses.replace(f, cases=(), holds=(), keywords=frozenset())
)
dated = unprotected.filter(lambda f: f.internal_date is not None or f.date_header is not None)


def later_or_same(after: datetime | None, before: datetime | None) -> bool:
    """``after >= before`` where None means "indefinitely", later than any date."""
    return after is None or (before is not None and after >= before)


def assert_well_formed(verdict: Verdict, now: datetime) -> None:
    assert verdict.reasons
    assert len(set(verdict.reasons)) == len(verdict.reasons)
    purge_time = verdict.keep_until is not None and now >= verdict.keep_until
    assert (verdict.action is Action.PURGE) == purge_time
    if verdict.action is Action.PURGE:
        assert not KEEPING & {reason.kind for reason in verdict.reasons}
        assert verdict.reasons[0].kind in {ReasonKind.RULE, ReasonKind.DEFAULT}


@EXAMPLES
@given(message_facts, policies, instants)
def test_verdicts_are_well_formed_and_deterministic(
    facts: MessageFacts, policy: Policy, now: datetime
) -> None:
    verdict = decide(facts, policy, now)
    assert_well_formed(verdict, now)
    assert decide(facts, policy, now) == verdict
    shuffled = dataclasses.replace(facts, cases=facts.cases[::-1], holds=facts.holds[::-1])
    assert decide(shuffled, policy, now) == verdict


@EXAMPLES
@given(message_facts, policies, instants, st.sampled_from(["tvist-2024", "ny-tvist"]))
def test_a_hold_always_keeps(facts: MessageFacts, policy: Policy, now: datetime, hold: str) -> None:
    held = decide(dataclasses.replace(facts, holds=(*facts.holds, hold)), policy, now)
    assert (held.action, held.keep_until) == (Action.KEEP, None)
    assert held.reasons[0].kind is ReasonKind.HOLD


@EXAMPLES
@given(message_facts, policies, instants)
def test_an_open_case_always_keeps(facts: MessageFacts, policy: Policy, now: datetime) -> None:
    case = CaseLink("REK-2025-0001", is_open=True, closed_at=None)
    in_case = decide(dataclasses.replace(facts, cases=(*facts.cases, case)), policy, now)
    assert (in_case.action, in_case.keep_until) == (Action.KEEP, None)
    assert in_case.reasons[0].kind in {ReasonKind.HOLD, ReasonKind.CASE_OPEN}


@EXAMPLES
@given(message_facts, policies, instants, st.sampled_from(["$Reklamation", "$REKLAMATION"]))
def test_the_case_keyword_always_keeps(
    facts: MessageFacts, policy: Policy, now: datetime, keyword: str
) -> None:
    marked = dataclasses.replace(facts, keywords=facts.keywords | {keyword})
    verdict = decide(marked, policy, now)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert ReasonKind.CASE_KEYWORD in {reason.kind for reason in verdict.reasons}


@EXAMPLES
@given(message_facts, policies, instants, case_links())
def test_adding_a_case_link_never_lets_mail_go_sooner(
    facts: MessageFacts, policy: Policy, now: datetime, case: CaseLink
) -> None:
    before = decide(facts, policy, now)
    after = decide(dataclasses.replace(facts, cases=(*facts.cases, case)), policy, now)
    assert later_or_same(after.keep_until, before.keep_until)
    assert before.action is Action.PURGE or after.action is Action.KEEP


@EXAMPLES
@given(message_facts, policies, instants, instants)
def test_moving_now_earlier_never_turns_keep_into_purge(
    facts: MessageFacts, policy: Policy, a: datetime, b: datetime
) -> None:
    earlier, later = sorted((a, b))
    at_earlier, at_later = decide(facts, policy, earlier), decide(facts, policy, later)
    # keep_until depends on the facts and the policy only, never on the clock.
    assert at_earlier.keep_until == at_later.keep_until
    if at_later.action is Action.KEEP:
        assert at_earlier.action is Action.KEEP


@EXAMPLES
@given(
    message_facts.map(lambda f: dataclasses.replace(f, internal_date=None, date_header=None)),
    policies,
    instants,
)
def test_no_usable_date_keeps_and_says_so(
    facts: MessageFacts, policy: Policy, now: datetime
) -> None:
    verdict = decide(facts, policy, now)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    kinds = [reason.kind for reason in verdict.reasons]
    assert ReasonKind.NO_DATE in kinds
    if not (facts.holds or facts.cases or facts.keywords & {"$reklamation"}):
        assert kinds[0] is ReasonKind.NO_DATE


@EXAMPLES
@given(
    message_facts,
    policies,
    instants,
    st.integers(min_value=0, max_value=30),
    st.sampled_from(list(Anchor)),
)
def test_a_matching_rule_at_least_as_long_as_the_default_never_lets_mail_go_sooner(
    facts: MessageFacts, policy: Policy, now: datetime, extra: int, anchor: Anchor
) -> None:
    longer = Duration(policy.default_keep.amount + extra, policy.default_keep.unit)
    matches_this = RetentionRule("longer", longer, anchor, (FolderMatcher((facts.folder,)),))
    before = decide(facts, policy, now)
    after = decide(facts, dataclasses.replace(policy, rules=(*policy.rules, matches_this)), now)
    assert later_or_same(after.keep_until, before.keep_until)
    assert before.action is Action.PURGE or after.action is Action.KEEP


@EXAMPLES
@given(dated, policies, instants)
def test_among_matching_rules_the_longest_wins(
    facts: MessageFacts, policy: Policy, now: datetime
) -> None:
    matching = [rule for rule in policy.rules if rule.matches(facts)]
    verdict = decide(facts, policy, now)
    if not matching:
        assert verdict.reasons[0].kind is ReasonKind.DEFAULT
        return
    alone = [decide(facts, dataclasses.replace(policy, rules=(r,)), now) for r in matching]
    ends = [v.keep_until for v in alone]
    assert all(end is not None for end in ends)  # dates in 2000-2040 never overflow
    longest = max(end for end in ends if end is not None)
    assert verdict.keep_until == longest
    winner = matching[ends.index(longest)]
    reasons = [r for r in verdict.reasons if r.kind is ReasonKind.RULE]
    assert reasons[0].name == winner.name
    assert {r.name for r in reasons} == {r.name for r in matching}
    reordered = decide(facts, dataclasses.replace(policy, rules=policy.rules[::-1]), now)
    assert (reordered.action, reordered.keep_until) == (verdict.action, verdict.keep_until)


@EXAMPLES
@given(dated, policies, instants, durations, st.sampled_from(list(Anchor)), matchers)
def test_once_a_rule_matches_adding_another_never_lets_mail_go_sooner(
    facts: MessageFacts,
    policy: Policy,
    now: datetime,
    keep: Duration,
    anchor: Anchor,
    matcher: Matcher,
) -> None:
    if not any(rule.matches(facts) for rule in policy.rules):
        policy = dataclasses.replace(
            policy,
            rules=(RetentionRule("here", keep, anchor, (FolderMatcher((facts.folder,)),)),),
        )
    before = decide(facts, policy, now)
    extra = RetentionRule("extra", keep, anchor, (matcher,))
    after = decide(facts, dataclasses.replace(policy, rules=(*policy.rules, extra)), now)
    assert later_or_same(after.keep_until, before.keep_until)


untouched = message_facts.map(
    lambda f: dataclasses.replace(
        f,
        cases=(),
        holds=(),
        keywords=frozenset(k for k in f.keywords if "reklamation" not in k.casefold()),
    )
)


@given(untouched, policies, instants)
def test_the_stored_retention_verdict_is_the_decision_for_untouched_mail(
    facts: MessageFacts, policy: Policy, now: datetime
) -> None:
    """What planning relies on (``mailhygiene.retention``): without a hold, a case link or
    a case keyword, ``retention_verdict`` (computed once, without ``now``) gives exactly
    the action, the deciding reason and the end date ``decide`` gives at any ``now``."""
    stored = retention_verdict(facts, policy)
    verdict = decide(facts, policy, now)
    purgeable = stored.keep_until is not None and now >= stored.keep_until
    assert verdict.action is (Action.PURGE if purgeable else Action.KEEP)
    assert verdict.reasons[0] == stored.reason
    assert verdict.keep_until == stored.keep_until


@given(policies, policies)
def test_the_retention_key_tells_policies_apart_by_their_retention_part(
    one: Policy, other: Policy
) -> None:
    same_retention = (one.timezone, one.default_keep, one.rules) == (
        other.timezone,
        other.default_keep,
        other.rules,
    )
    assert (one.retention_key == other.retention_key) is same_retention
    unrelated = dataclasses.replace(one, case_keep_after_close=other.case_keep_after_close)
    assert unrelated.retention_key == one.retention_key
    assert one.retention_reads_keywords is any(
        isinstance(matcher, KeywordMatcher) for rule in one.rules for matcher in rule.matchers
    )
