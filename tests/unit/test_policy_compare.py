"""policy.compare: each kind of weakening is found, extensions are accepted, and — over
random policies and their random edits — a change found harmless never lets any message
go sooner (the extend-only lock's guarantee)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.config.rules import parse_rules
from mailhygiene.errors import ConfigError
from mailhygiene.policy import (
    EXTEND_ONLY,
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
    PurgeAction,
    RetentionRule,
    SenderMatcher,
    SubjectMatcher,
    decide,
)
from mailhygiene.policy.compare import Effect, compare_policies, covers, weakenings

D = Duration.parse
R, EOY = Anchor.RECEIVED, Anchor.END_OF_YEAR

BOOKKEEPING = RetentionRule(
    "bookkeeping", D("7y"), EOY, (SubjectMatcher(("faktura", "kvitto")),), source="BFL"
)
NEWSLETTERS = RetentionRule(
    "newsletters", D("30d"), R, (HeaderMatcher((HeaderTest("list-id", "."),)),)
)
ARCHIVE = RetentionRule(
    "archive", D("2y"), R, (FolderMatcher(("Arkiv*",)), SenderMatcher(("@bank.se",)))
)
BASE = Policy(
    default_keep=D("180d"),
    rules=(BOOKKEEPING, NEWSLETTERS, ARCHIVE),
    lock=EXTEND_ONLY,
    source_hash="base",
)


def with_rule(policy: Policy, name: str, **changes: object) -> Policy:
    rules = tuple(
        dataclasses.replace(rule, **changes) if rule.name == name else rule  # type: ignore[arg-type]
        for rule in policy.rules
    )
    return dataclasses.replace(policy, rules=rules)


def effects(old: Policy, new: Policy) -> list[tuple[str, Effect]]:
    return [(change.subject, change.effect) for change in compare_policies(old, new)]


# -- nothing changed -----------------------------------------------------------------------


def test_an_identical_policy_has_no_changes() -> None:
    assert compare_policies(BASE, dataclasses.replace(BASE, source_hash="other")) == ()


def test_reordered_rules_and_conditions_are_no_change() -> None:
    swapped = dataclasses.replace(
        BASE,
        rules=(
            NEWSLETTERS,
            dataclasses.replace(ARCHIVE, matchers=ARCHIVE.matchers[::-1]),
            dataclasses.replace(BOOKKEEPING, matchers=(SubjectMatcher(("kvitto", "faktura")),)),
        ),
    )
    assert compare_policies(BASE, swapped) == ()


# -- each kind of weakening ----------------------------------------------------------------

WEAKENINGS = {
    "shorter default": dataclasses.replace(BASE, default_keep=D("90d")),
    "rule in other units, possibly shorter": with_rule(BASE, "archive", keep=D("104w")),
    "shorter rule": with_rule(BASE, "bookkeeping", keep=D("5y")),
    "anchor moved earlier": with_rule(BASE, "bookkeeping", anchor=R),
    "shorter keep after a case closes": dataclasses.replace(BASE, case_keep_after_close=D("30d")),
    "shorter quarantine grace": dataclasses.replace(BASE, quarantine_grace=D("7d")),
    "delete instead of quarantine": dataclasses.replace(BASE, purge_action=PurgeAction.DELETE),
    "removed rule": dataclasses.replace(BASE, rules=(BOOKKEEPING, ARCHIVE)),
    "removed short rule": dataclasses.replace(BASE, rules=(BOOKKEEPING, NEWSLETTERS)),
    "renamed rule": dataclasses.replace(
        BASE, rules=(dataclasses.replace(BOOKKEEPING, name="bfl"), NEWSLETTERS, ARCHIVE)
    ),
    "added rule shorter than the default": dataclasses.replace(
        BASE,
        rules=(*BASE.rules, RetentionRule("auto", D("14d"), R, (KeywordMatcher(("$Auto",)),))),
    ),
    "added condition narrows": with_rule(
        BASE,
        "bookkeeping",
        matchers=(SubjectMatcher(("faktura", "kvitto")), FolderMatcher(("INBOX",))),
    ),
    "removed alternative narrows": with_rule(
        BASE, "bookkeeping", matchers=(SubjectMatcher(("faktura",)),)
    ),
    "different pattern": with_rule(BASE, "bookkeeping", matchers=(SubjectMatcher(("fakt",)),)),
    "different condition kind": with_rule(
        BASE, "bookkeeping", matchers=(KeywordMatcher(("$Faktura",)),)
    ),
    "widened short rule": with_rule(
        BASE,
        "newsletters",
        matchers=(HeaderMatcher((HeaderTest("list-id", "."), HeaderTest("x-mailer", "."))),),
    ),
    "case keyword": dataclasses.replace(BASE, case_keyword="$Complaint"),
    "case pattern": dataclasses.replace(BASE, case_pattern=r"REK-\d{4}-\d{3}"),
    "cases not auto-created": dataclasses.replace(BASE, case_auto_create=False),
    "lock removed": dataclasses.replace(BASE, lock=""),
    "time zone": dataclasses.replace(BASE, timezone="UTC"),
    "tombstones kept shorter": dataclasses.replace(BASE, tombstone_keep=D("5y")),
}


@pytest.mark.parametrize("name", list(WEAKENINGS))
def test_each_kind_of_weakening_is_found(name: str) -> None:
    found = weakenings(BASE, WEAKENINGS[name])
    assert found, name
    assert all(change.why for change in found)


def test_weakenings_name_what_and_why() -> None:
    [change] = weakenings(BASE, with_rule(BASE, "bookkeeping", keep=D("5y")))
    assert str(change) == (
        "rule 'bookkeeping': keep 7 years from the end of the calendar year it was received "
        "in → keep 5 years from the end of the calendar year it was received in "
        "[weakens: the mail it matches could go sooner]"
    )
    [removed] = weakenings(BASE, dataclasses.replace(BASE, rules=(BOOKKEEPING, ARCHIVE)))
    assert str(removed).startswith("rule 'newsletters' removed (was: newsletters: keep 30 days")
    [lock] = weakenings(BASE, dataclasses.replace(BASE, lock=""))
    assert str(lock) == "lock: extend-only → none [weakens: removes the extend-only lock]"


def test_several_weakenings_are_all_listed() -> None:
    worse = dataclasses.replace(
        with_rule(BASE, "archive", keep=D("1y")), default_keep=D("30d"), lock=""
    )
    assert [c.subject for c in weakenings(BASE, worse)] == [
        "default retention",
        "lock",
        "rule 'archive'",
    ]


# -- extensions are accepted ---------------------------------------------------------------

EXTENSIONS = {
    "longer default": dataclasses.replace(BASE, default_keep=D("1y")),
    "default in other units, provably longer": dataclasses.replace(BASE, default_keep=D("7m")),
    "longer rule": with_rule(BASE, "bookkeeping", keep=D("10y")),
    "anchor moved later": with_rule(BASE, "archive", anchor=EOY),
    "anchor moved earlier with a year more": with_rule(BASE, "bookkeeping", keep=D("8y"), anchor=R),
    "same period in other units": with_rule(BASE, "bookkeeping", keep=D("84m")),
    "longer keep after a case closes": dataclasses.replace(BASE, case_keep_after_close=D("1y")),
    "longer quarantine grace": dataclasses.replace(BASE, quarantine_grace=D("60d")),
    "added rule at least as long as the default": dataclasses.replace(
        BASE,
        rules=(*BASE.rules, RetentionRule("hr", D("2y"), R, (FolderMatcher(("HR*",)),))),
    ),
    "added alternative widens a long rule": with_rule(
        BASE, "bookkeeping", matchers=(SubjectMatcher(("faktura", "kvitto", "invoice")),)
    ),
    "dropped condition widens a long rule": with_rule(
        BASE, "archive", matchers=(FolderMatcher(("Arkiv*",)),)
    ),
    "short rule made longer than the default": with_rule(BASE, "newsletters", keep=D("1y")),
}


@pytest.mark.parametrize("name", list(EXTENSIONS))
def test_extensions_are_accepted(name: str) -> None:
    changes = compare_policies(BASE, EXTENSIONS[name])
    assert changes, name
    assert weakenings(BASE, EXTENSIONS[name]) == ()
    assert Effect.EXTENDS in {change.effect for change in changes}


def test_adding_the_lock_quarantine_and_case_creation_extend() -> None:
    weaker = dataclasses.replace(
        BASE, lock="", purge_action=PurgeAction.DELETE, case_auto_create=False
    )
    assert effects(weaker, BASE) == [
        ("complaint cases", Effect.EXTENDS),
        ("purge", Effect.EXTENDS),
        ("lock", Effect.EXTENDS),
    ]


def test_neutral_changes_are_shown_but_allowed() -> None:
    new = dataclasses.replace(
        with_rule(BASE, "bookkeeping", description="Fakturor", source="BFL 7:2"),
        auto_approve_limit=10,
        plan_ttl=D("2d"),
        quarantine_folder="Karantän",
    )
    assert effects(BASE, new) == [
        ("quarantine folder", Effect.NEUTRAL),
        ("auto-approval limit", Effect.NEUTRAL),
        ("plan expiry", Effect.NEUTRAL),
        ("rule 'bookkeeping' description", Effect.NEUTRAL),
        ("rule 'bookkeeping' source", Effect.NEUTRAL),
    ]
    assert weakenings(BASE, new) == ()


def test_grace_changes_do_not_matter_while_purging_deletes() -> None:
    deleting = dataclasses.replace(BASE, purge_action=PurgeAction.DELETE)
    shorter = dataclasses.replace(deleting, quarantine_grace=D("1d"))
    assert effects(deleting, shorter) == [("quarantine grace period", Effect.NEUTRAL)]


def test_parsed_rules_files_compare_like_built_policies() -> None:
    text = '[retention]\ndefault = "180d"\n[policy]\nlock = "extend-only"\n'
    old = parse_rules(text, source="old")
    new = parse_rules(text.replace("180d", "90d"), source="new")
    assert [c.subject for c in weakenings(old, new)] == ["default retention"]
    assert weakenings(new, old) == ()


# -- periods across units and anchors ------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "new_anchor", "old", "old_anchor", "expected"),
    [
        ("6m", R, "180d", R, True),  # six months are never under 181 days
        ("6m", R, "182d", R, False),  # …but can be 181
        ("1m", R, "28d", R, True),
        ("1m", R, "29d", R, False),
        ("1y", R, "365d", R, True),
        ("1y", R, "366d", R, False),
        ("52w", R, "1y", R, False),
        ("53w", R, "1y", R, True),
        ("7y", EOY, "7y", R, True),
        ("7y", R, "7y", EOY, False),
        ("8y", R, "7y", EOY, True),
        ("7y", R, "6y", EOY, True),
        ("400d", R, "30d", EOY, True),
        ("395d", R, "30d", EOY, False),
        ("13m", R, "1m", EOY, True),
        ("12m", R, "1m", EOY, False),
    ],
)
def test_covers_compares_for_every_date(
    new: str, new_anchor: Anchor, old: str, old_anchor: Anchor, expected: bool
) -> None:
    assert covers(D(new), new_anchor, D(old), old_anchor) is expected


def _end(keep: Duration, anchor: Anchor, received: datetime) -> datetime:
    start = datetime(received.year + 1, 1, 1, tzinfo=UTC) if anchor is EOY else received
    return keep.add_to(start)


durations = st.builds(
    Duration, st.integers(min_value=1, max_value=60), st.sampled_from(list(DurationUnit))
)
dates = st.integers(min_value=0, max_value=100 * 366).map(
    lambda days: datetime(1990, 1, 1, 13, tzinfo=UTC) + timedelta(days=days)
)


@settings(max_examples=2000, deadline=None, database=None)
@given(durations, st.sampled_from([R, EOY]), durations, st.sampled_from([R, EOY]), dates)
def test_covers_is_sound(
    new: Duration, new_anchor: Anchor, old: Duration, old_anchor: Anchor, received: datetime
) -> None:
    if covers(new, new_anchor, old, old_anchor):
        assert _end(new, new_anchor, received) >= _end(old, old_anchor, received)


@pytest.mark.parametrize("months", [1, 2, 6, 11, 12, 13, 24, 84])
def test_month_bounds_are_tight(months: int) -> None:
    """Months are compared with days by their shortest and longest span, both reached
    by real start dates (around 2100, a century year that is not a leap year)."""
    keep = Duration(months, DurationUnit.MONTHS)
    first = datetime(2090, 1, 1, tzinfo=UTC)
    starts = (first + timedelta(days=d) for d in range(20 * 366))
    spans = {(keep.add_to(start) - start).days for start in starts}
    shortest, longest = min(spans), max(spans)
    assert covers(keep, R, Duration(shortest, DurationUnit.DAYS), R)
    assert not covers(keep, R, Duration(shortest + 1, DurationUnit.DAYS), R)
    assert covers(Duration(longest, DurationUnit.DAYS), R, keep, R)
    assert not covers(Duration(longest - 1, DurationUnit.DAYS), R, keep, R)


# -- the lock's guarantee, over random policies and edits ----------------------------------

MATCHERS: list[Matcher] = [
    FolderMatcher(("INBOX",)),
    FolderMatcher(("INBOX", "Junk")),
    SubjectMatcher(("faktura",)),
    SubjectMatcher(("faktura", "kvitto")),
    SenderMatcher(("@bank.se",)),
    HeaderMatcher((HeaderTest("list-id", "."),)),
    KeywordMatcher(("$Faktura",)),
]
matcher_lists = st.lists(st.sampled_from(MATCHERS), min_size=1, max_size=2).map(
    lambda ms: tuple({m.NAME: m for m in ms}.values())
)
anchors = st.sampled_from([R, EOY])


@st.composite
def rules(draw: st.DrawFn, name: str) -> RetentionRule:
    return RetentionRule(name, draw(durations), draw(anchors), draw(matcher_lists))


@st.composite
def base_policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(min_value=0, max_value=3))
    return Policy(
        default_keep=draw(durations),
        case_keep_after_close=draw(durations),
        rules=tuple(draw(rules(f"r{i}")) for i in range(count)),
    )


@st.composite
def edited(draw: st.DrawFn, policy: Policy) -> Policy:
    """``policy`` after one to three random edits, harmless or not."""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(
                ["default", "cases", "keep", "anchor", "matchers", "widen", "add", "remove"]
            )
        )
        names = [rule.name for rule in policy.rules]
        if kind == "default":
            policy = dataclasses.replace(policy, default_keep=draw(durations))
        elif kind == "cases":
            policy = dataclasses.replace(policy, case_keep_after_close=draw(durations))
        elif kind == "add":
            # a name no rule has now: one added, one removed, one added must not clash
            fresh = next(f"n{i}" for i in itertools.count() if f"n{i}" not in names)
            policy = dataclasses.replace(policy, rules=(*policy.rules, draw(rules(fresh))))
        elif names:
            name = draw(st.sampled_from(names))
            rule = next(r for r in policy.rules if r.name == name)
            if kind == "keep":
                policy = with_rule(policy, name, keep=draw(durations))
            elif kind == "anchor":
                policy = with_rule(policy, name, anchor=draw(anchors))
            elif kind == "matchers":
                policy = with_rule(policy, name, matchers=draw(matcher_lists))
            elif kind == "widen" and len(rule.matchers) > 1:
                policy = with_rule(policy, name, matchers=rule.matchers[1:])
            elif kind == "remove":
                policy = dataclasses.replace(
                    policy, rules=tuple(r for r in policy.rules if r.name != name)
                )
    return policy


ENVELOPES = list(
    itertools.product(
        ["INBOX", "Junk", "Sent"],
        ["kund@example.se", "faktura@bank.se"],
        ["Faktura 12", "Hej", "Ditt kvitto"],
        [{}, {"list-id": "<news.example>"}],
        [frozenset(), frozenset({"$Faktura"})],
    )
)


@st.composite
def messages(draw: st.DrawFn) -> MessageFacts:
    folder, sender, subject, headers, keywords = draw(st.sampled_from(ENVELOPES))
    closed = draw(st.none() | dates)
    return MessageFacts(
        message_key=1,
        account="support",
        folder=folder,
        internal_date=draw(dates),
        date_header=None,
        size=1,
        from_addr=sender,
        to_addrs=(),
        cc_addrs=(),
        subject=subject,
        headers=headers,
        keywords=keywords,
        cases=(CaseLink("REK-2024-0001", False, closed),) if closed else (),
    )


@settings(max_examples=600, deadline=None, database=None)
@given(st.data())
def test_a_change_without_weakenings_never_lets_a_message_go_sooner(data: st.DataObject) -> None:
    old = data.draw(base_policies())
    new = data.draw(edited(old))
    if weakenings(old, new):
        return
    for facts in data.draw(st.lists(messages(), min_size=1, max_size=8)):
        now = datetime(2000, 1, 1, tzinfo=UTC)
        before = decide(facts, old, now).keep_until
        after = decide(facts, new, now).keep_until
        assert after is None or (before is not None and after >= before), (old, new, facts)


# -- the [policy] section of rules.toml ----------------------------------------------------


def test_the_policy_section_is_read_and_defaults_to_no_lock_and_ten_years() -> None:
    minimal = parse_rules('[retention]\ndefault = "180d"\n', source="rules.toml")
    assert (minimal.lock, minimal.tombstone_keep) == ("", D("10y"))
    locked = parse_rules(
        '[retention]\ndefault = "180d"\n[policy]\nlock = "extend-only"\ntombstone_keep = "12y"\n',
        source="rules.toml",
    )
    assert (locked.lock, locked.tombstone_keep) == (EXTEND_ONLY, D("12y"))
    assert "lock: extend-only" in locked.describe()
    unlocked = parse_rules(
        '[retention]\ndefault = "180d"\n[policy]\nlock = "none"\n', source="rules.toml"
    )
    assert unlocked.lock == ""


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            'lock = "extend"',
            "rules.toml: policy.lock: expected one of none, extend-only, got 'extend'; "
            "did you mean 'extend-only'?",
        ),
        ("lock = true", "rules.toml: policy.lock: expected a string, got true"),
        ('tombstone_keep = "0y"', "rules.toml: policy.tombstone_keep: must be longer than zero"),
        ('lok = "none"', "rules.toml: policy.lok: unknown key 'lok'; did you mean 'lock'?"),
    ],
)
def test_policy_section_mistakes_name_the_key(section: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_rules(f'[retention]\ndefault = "180d"\n[policy]\n{section}\n', source="rules.toml")
    assert str(error.value).startswith(expected)
