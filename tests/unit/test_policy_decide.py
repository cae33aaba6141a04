"""decide(): one example per retention semantic, plus the condition kinds and the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailhygiene.policy import (
    HEADER_NAMES,
    MATCHERS,
    Action,
    Anchor,
    CaseLink,
    Duration,
    FolderMatcher,
    HeaderMatcher,
    HeaderTest,
    KeywordMatcher,
    MatcherValueError,
    MessageFacts,
    Policy,
    Reason,
    ReasonKind,
    RecipientMatcher,
    RetentionRule,
    SenderMatcher,
    SubjectMatcher,
    decide,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
RECEIVED = datetime(2024, 3, 2, 9, 15, tzinfo=UTC)  # 10:15 in Stockholm


def facts(**changes: Any) -> MessageFacts:
    base = MessageFacts(
        message_key=1,
        account="info@promix.se",
        folder="INBOX",
        internal_date=RECEIVED,
        date_header=RECEIVED - timedelta(minutes=3),
        size=2048,
        from_addr="kund@example.se",
        to_addrs=("info@promix.se",),
        cc_addrs=(),
        subject="Fråga om leverans",
        headers={},
        keywords=frozenset({"\\Seen"}),
    )
    return dataclasses.replace(base, **changes)


def rule(name: str, keep: str, *matchers: Any, anchor: Anchor = Anchor.RECEIVED) -> RetentionRule:
    return RetentionRule(name, Duration.parse(keep), anchor, tuple(matchers))


BOOKKEEPING = rule("bookkeeping", "7y", SubjectMatcher(("faktura",)), anchor=Anchor.END_OF_YEAR)
NEWSLETTERS = rule("newsletters", "30d", HeaderMatcher((HeaderTest("list-id", "."),)))
POLICY = Policy(rules=(BOOKKEEPING, NEWSLETTERS))
END_OF_TIME = datetime.max.replace(tzinfo=UTC)
DEFAULT_END = datetime(2024, 8, 29, 8, 15, tzinfo=UTC)  # 180 days later, 10:15 CEST


def kinds(reasons: tuple[Reason, ...]) -> list[ReasonKind]:
    return [reason.kind for reason in reasons]


# -- 5. default retention ----------------------------------------------------------------


def test_default_keeps_until_180_days_after_received_and_purges_from_then() -> None:
    before = decide(facts(), POLICY, DEFAULT_END - timedelta(microseconds=1))
    at = decide(facts(), POLICY, DEFAULT_END)
    assert before.action is Action.KEEP
    assert at.action is Action.PURGE
    assert before.keep_until == at.keep_until == DEFAULT_END
    assert at.reasons == (
        Reason(
            ReasonKind.DEFAULT,
            "default",
            "kept 180 days from received 2024-03-02 10:15 → until 2024-08-29 10:15 "
            "Europe/Stockholm",
        ),
    )


def test_the_date_header_counts_when_internaldate_is_missing() -> None:
    sent = datetime(2024, 1, 1, tzinfo=UTC)
    verdict = decide(facts(internal_date=None, date_header=sent), POLICY, sent)
    # Days are counted on the Stockholm wall clock: 01:00 CET stays 01:00, now CEST.
    assert verdict.keep_until == datetime(2024, 6, 29, 1, tzinfo=STOCKHOLM)
    assert "sent (Date header)" in verdict.reasons[0].detail


def test_no_usable_date_keeps_and_says_so() -> None:
    verdict = decide(facts(internal_date=None, date_header=None), POLICY, END_OF_TIME)
    assert verdict.action is Action.KEEP
    assert verdict.keep_until is None
    assert verdict.reasons[0].kind is ReasonKind.NO_DATE
    assert "default retention cannot be counted" in verdict.reasons[0].detail


def test_no_date_still_lists_the_rules_that_match() -> None:
    undated = facts(internal_date=None, date_header=None, subject="Faktura 12")
    verdict = decide(undated, POLICY, END_OF_TIME)
    assert kinds(verdict.reasons) == [ReasonKind.NO_DATE, ReasonKind.RULE]
    assert verdict.reasons[1].name == "bookkeeping"


# -- 4. retention rules ------------------------------------------------------------------


def test_end_of_year_anchor_keeps_through_the_seventh_year() -> None:
    verdict = decide(facts(subject="Faktura 2024-117"), POLICY, RECEIVED)
    # First instant of 2032 in Stockholm (CET, +01:00).
    assert verdict.keep_until == datetime(2031, 12, 31, 23, tzinfo=UTC)
    assert verdict.reasons[0] == Reason(
        ReasonKind.RULE,
        "bookkeeping",
        "kept 7 years from the end of 2024 (received 2024-03-02 10:15) → through 2031-12-31",
    )
    last_second = datetime(2031, 12, 31, 22, 59, 59, tzinfo=UTC)
    assert decide(facts(subject="Faktura"), POLICY, last_second).action is Action.KEEP
    assert decide(facts(subject="Faktura"), POLICY, verdict.keep_until).action is Action.PURGE


def test_end_of_year_is_the_year_in_the_policy_time_zone() -> None:
    new_year_local = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)  # 2025-01-01 00:30 Stockholm
    in_stockholm = decide(facts(internal_date=new_year_local, subject="faktura"), POLICY, RECEIVED)
    in_utc = decide(
        facts(internal_date=new_year_local, subject="faktura"),
        dataclasses.replace(POLICY, timezone="UTC"),
        RECEIVED,
    )
    assert in_stockholm.keep_until == datetime(2032, 12, 31, 23, tzinfo=UTC)
    assert in_utc.keep_until == datetime(2032, 1, 1, tzinfo=UTC)


def test_a_matching_rule_replaces_the_default_even_when_shorter() -> None:
    newsletter = facts(headers={"list-id": "<news.example.se>"})
    verdict = decide(newsletter, POLICY, datetime(2024, 4, 1, 10, 15, tzinfo=STOCKHOLM))
    assert verdict.action is Action.PURGE
    assert verdict.keep_until == datetime(2024, 4, 1, 10, 15, tzinfo=STOCKHOLM)
    assert kinds(verdict.reasons) == [ReasonKind.RULE]


def test_the_longest_matching_rule_wins_and_all_are_listed() -> None:
    invoice_newsletter = facts(subject="Din faktura", headers={"list-id": "<billing.example>"})
    verdict = decide(invoice_newsletter, POLICY, RECEIVED + timedelta(days=31))
    assert verdict.action is Action.KEEP
    assert [r.name for r in verdict.reasons] == ["bookkeeping", "newsletters"]
    assert verdict.keep_until == datetime(2031, 12, 31, 23, tzinfo=UTC)


def test_rules_that_end_at_the_same_instant_go_to_the_first_in_file_order() -> None:
    first = rule("first", "4w", FolderMatcher(("INBOX",)))
    second = rule("second", "28d", FolderMatcher(("IN*",)))
    verdict = decide(facts(), Policy(rules=(first, second)), RECEIVED)
    assert [r.name for r in verdict.reasons] == ["first", "second"]


# -- 1-3. holds and cases ----------------------------------------------------------------


def test_a_hold_keeps_indefinitely_and_comes_first() -> None:
    held = facts(holds=("tvist-2024", "tvist-2024"), subject="faktura")
    verdict = decide(held, POLICY, END_OF_TIME)
    assert verdict.action is Action.KEEP
    assert verdict.keep_until is None
    assert kinds(verdict.reasons) == [ReasonKind.HOLD, ReasonKind.RULE]
    assert verdict.reasons[0].name == "tvist-2024"


def test_an_open_case_keeps_indefinitely() -> None:
    in_case = facts(cases=(CaseLink("REK-2024-0001", is_open=True, closed_at=None),))
    verdict = decide(in_case, POLICY, END_OF_TIME)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert verdict.reasons[0] == Reason(
        ReasonKind.CASE_OPEN, "REK-2024-0001", "complaint case is open: kept"
    )
    assert verdict.reasons[1].kind is ReasonKind.DEFAULT


@pytest.mark.parametrize("keyword", ["$Reklamation", "$reklamation", "$REKLAMATION"])
def test_the_case_keyword_keeps_whatever_its_case(keyword: str) -> None:
    marked = facts(keywords=frozenset({"\\Seen", keyword}))
    verdict = decide(marked, POLICY, END_OF_TIME)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert verdict.reasons[0].kind is ReasonKind.CASE_KEYWORD
    assert verdict.reasons[0].name == "$Reklamation"


def test_a_mirrored_per_case_keyword_keeps_nothing_once_its_closed_case_has_run_out() -> None:
    closed_at = datetime(2024, 10, 1, 14, tzinfo=STOCKHOLM)
    mirrored = facts(
        keywords=frozenset({"\\Seen", "$Reklamation_REK-2024-0002"}),
        cases=(CaseLink("REK-2024-0002", is_open=False, closed_at=closed_at),),
    )
    verdict = decide(mirrored, POLICY, datetime(2025, 6, 1, tzinfo=UTC))
    assert verdict.action is Action.PURGE, verdict.explain()
    assert ReasonKind.CASE_KEYWORD not in kinds(verdict.reasons)


@pytest.mark.parametrize("keyword", ["$Reklamation_REK-2024-0009", "$reklamation_rek-2024-0009"])
def test_a_per_case_keyword_naming_a_case_the_thread_is_not_linked_to_keeps(keyword: str) -> None:
    """Marked in a client for another case, not linked yet: never purged meanwhile."""
    closed_at = datetime(2024, 10, 1, 14, tzinfo=STOCKHOLM)
    marked = facts(
        keywords=frozenset({keyword}),
        cases=(CaseLink("REK-2024-0002", is_open=False, closed_at=closed_at),),
    )
    verdict = decide(marked, POLICY, END_OF_TIME)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert verdict.reasons[0].kind is ReasonKind.CASE_KEYWORD
    assert "REK-2024-0009" in verdict.reasons[0].detail


def test_the_plain_keyword_keeps_even_on_a_closed_cases_thread() -> None:
    closed_at = datetime(2024, 10, 1, 14, tzinfo=STOCKHOLM)
    marked = facts(
        keywords=frozenset({"$Reklamation", "$Reklamation_REK-2024-0002"}),
        cases=(CaseLink("REK-2024-0002", is_open=False, closed_at=closed_at),),
    )
    verdict = decide(marked, POLICY, END_OF_TIME)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert verdict.reasons[0].name == "$Reklamation"


def test_a_closed_case_keeps_for_the_period_after_closing_then_falls_through() -> None:
    closed_at = datetime(2024, 10, 1, 14, tzinfo=STOCKHOLM)
    closed = facts(cases=(CaseLink("REK-2024-0002", is_open=False, closed_at=closed_at),))
    case_end = datetime(2024, 12, 30, 14, tzinfo=STOCKHOLM)
    during = decide(closed, POLICY, case_end - timedelta(seconds=1))
    after = decide(closed, POLICY, case_end)
    assert during.action is Action.KEEP
    assert during.keep_until == after.keep_until == case_end
    assert kinds(during.reasons) == [ReasonKind.CASE_CLOSED, ReasonKind.DEFAULT]
    assert after.action is Action.PURGE
    # The expired case no longer protects but is still listed, after the deciding reason.
    assert kinds(after.reasons) == [ReasonKind.DEFAULT, ReasonKind.CASE_CLOSED]


def test_keep_until_is_the_latest_of_case_and_bookkeeping() -> None:
    closed_at = datetime(2024, 10, 1, tzinfo=UTC)
    invoice = facts(
        subject="Faktura",
        cases=(CaseLink("REK-2024-0003", is_open=False, closed_at=closed_at),),
    )
    verdict = decide(invoice, POLICY, closed_at)
    assert verdict.reasons[0].kind is ReasonKind.CASE_CLOSED
    assert verdict.keep_until == datetime(2031, 12, 31, 23, tzinfo=UTC)


def test_the_latest_closed_case_counts() -> None:
    early = CaseLink("REK-2024-0004", False, closed_at=datetime(2024, 5, 1, tzinfo=STOCKHOLM))
    late = CaseLink("REK-2024-0005", False, closed_at=datetime(2024, 9, 1, tzinfo=STOCKHOLM))
    verdict = decide(facts(cases=(early, late)), POLICY, datetime(2024, 9, 2, tzinfo=UTC))
    assert verdict.keep_until == datetime(2024, 11, 30, tzinfo=STOCKHOLM)
    assert [r.name for r in verdict.reasons[:2]] == ["REK-2024-0005", "REK-2024-0004"]


def test_one_case_linked_twice_is_one_reason_and_its_later_closing_counts() -> None:
    """Found by the property tests: two links to one case that disagree on when it
    closed gave the same reason twice. Either order, one reason, the later closing."""
    early = CaseLink("REK-2024-0007", False, closed_at=datetime(2024, 5, 1, tzinfo=STOCKHOLM))
    late = dataclasses.replace(early, closed_at=datetime(2024, 9, 1, tzinfo=STOCKHOLM))
    unknown = dataclasses.replace(early, closed_at=None)
    now = datetime(2024, 9, 2, tzinfo=UTC)
    for links, closing in (
        ((early, late), "closed 2024-09-01"),
        ((late, early), "closed 2024-09-01"),
        ((early, early), "closed 2024-05-01"),
    ):
        verdict = decide(facts(cases=links), POLICY, now)
        closed = [r for r in verdict.reasons if r.kind is ReasonKind.CASE_CLOSED]
        assert len(closed) == 1
        assert closing in closed[0].detail
    for links in ((late, unknown), (unknown, late)):
        verdict = decide(facts(cases=links), POLICY, now)
        assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
        assert len([r for r in verdict.reasons if r.kind is ReasonKind.CASE_CLOSED]) == 1


def test_a_closed_case_without_a_closing_date_keeps() -> None:
    odd = facts(cases=(CaseLink("REK-2024-0006", is_open=False, closed_at=None),))
    verdict = decide(odd, POLICY, END_OF_TIME)
    assert (verdict.action, verdict.keep_until) == (Action.KEEP, None)
    assert "closing date is unknown" in verdict.reasons[0].detail


# -- robustness --------------------------------------------------------------------------


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(facts(), POLICY, datetime(2024, 1, 1))


def test_naive_dates_in_facts_are_refused() -> None:
    with pytest.raises(ValueError, match="internal_date must be timezone-aware"):
        facts(internal_date=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="closed_at must be timezone-aware"):
        CaseLink("REK-1", is_open=False, closed_at=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("received", "subject"),
    [
        (datetime(9999, 12, 31, 23, tzinfo=UTC), "hej"),
        (datetime(9999, 12, 31, 23, tzinfo=UTC), "faktura"),
        (datetime(9999, 1, 1, tzinfo=UTC), "faktura"),
        (END_OF_TIME, "hej"),
    ],
)
def test_dates_at_the_end_of_time_keep_instead_of_crashing(
    received: datetime, subject: str
) -> None:
    verdict = decide(facts(internal_date=received, subject=subject), POLICY, END_OF_TIME)
    assert verdict.action is Action.KEEP
    assert verdict.keep_until is None
    assert "beyond the year 9999" in verdict.reasons[0].detail


def test_dates_at_the_start_of_time_do_not_crash() -> None:
    ancient = facts(internal_date=datetime.min.replace(tzinfo=UTC), subject="faktura")
    policy = dataclasses.replace(POLICY, timezone="America/New_York")
    assert decide(ancient, policy, RECEIVED).action is Action.KEEP


def test_explain_renders_action_and_reasons() -> None:
    text = decide(facts(subject="faktura"), POLICY, RECEIVED).explain()
    assert text.splitlines()[0] == "keep (purgeable from: 2031-12-31T23:00:00+00:00)"
    assert "rule bookkeeping: kept 7 years" in text


# -- the model ---------------------------------------------------------------------------


def test_policy_refuses_duplicate_rule_names_bad_zone_and_negative_limit() -> None:
    with pytest.raises(ValueError, match="duplicate rule name 'bookkeeping'"):
        Policy(rules=(BOOKKEEPING, BOOKKEEPING))
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Policy(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="negative"):
        Policy(auto_approve_limit=-1)
    with pytest.raises(ValueError, match="invalid case pattern"):
        Policy(case_pattern="REK-(")


def test_a_rule_needs_a_name_and_a_condition() -> None:
    with pytest.raises(ValueError, match="no conditions"):
        rule("all", "1y")
    with pytest.raises(ValueError, match="needs a name"):
        rule(" ", "1y", FolderMatcher(("INBOX",)))


def test_rule_and_policy_describe_themselves() -> None:
    assert BOOKKEEPING.describe() == (
        "bookkeeping: keep 7 years from the end of the calendar year it was received in "
        "when the subject contains /faktura/ (ignoring case)"
    )
    assert "default retention: 180 days" in POLICY.describe()
    assert "rule newsletters: keep 30 days" in POLICY.describe()


# -- condition kinds: one test each --------------------------------------------------------


def test_registry_holds_every_kind_by_name() -> None:
    assert set(MATCHERS) == {"folder", "sender", "recipient", "subject", "header", "keyword"}
    assert all(name == kind.NAME for name, kind in MATCHERS.items())


def test_folder_globs_ignore_case() -> None:
    matcher = FolderMatcher.from_config(["INBOX/Ekonomi*", "Junk"])
    assert matcher.matches(facts(folder="inbox/ekonomi/2024"))
    assert matcher.matches(facts(folder="JUNK"))
    assert not matcher.matches(facts(folder="INBOX"))
    assert not matcher.matches(facts(folder="Junk/old"))
    assert matcher.describe() == "the folder matches 'INBOX/Ekonomi*' or 'Junk'"


def test_sender_takes_addresses_domains_and_globs() -> None:
    matcher = SenderMatcher.from_config(["kund@example.se", "@bank.se", "*@*.fortnox.se"])
    assert matcher.matches(facts(from_addr="kund@example.se"))
    assert matcher.matches(facts(from_addr="noreply@bank.se"))
    assert not matcher.matches(facts(from_addr="noreply@evil-bank.se"))
    assert not matcher.matches(facts(from_addr="noreply@sub.bank.se"))
    assert matcher.matches(facts(from_addr="faktura@mail.fortnox.se"))
    assert not matcher.matches(facts(from_addr=""))
    assert matcher.describe() == (
        "it is from kund@example.se or any address at bank.se "
        "or an address matching '*@*.fortnox.se'"
    )
    with pytest.raises(MatcherValueError, match="expected an address") as error:
        SenderMatcher.from_config(["@ok.se", "bank.se"])
    assert error.value.subkey == "[1]"


def test_recipient_looks_at_to_and_cc() -> None:
    matcher = RecipientMatcher.from_config("@promix.se")
    assert matcher.matches(facts(to_addrs=(), cc_addrs=("a@x.se", "ekonomi@promix.se")))
    assert not matcher.matches(facts(to_addrs=("a@x.se",), cc_addrs=()))
    assert matcher.describe() == "it was sent to (To/Cc) any address at promix.se"


def test_subject_regex_searches_ignoring_case() -> None:
    matcher = SubjectMatcher.from_config([r"faktura\s+\d+", "kvitto"])
    assert matcher.matches(facts(subject="Re: FAKTURA 1234"))
    assert matcher.matches(facts(subject="Ditt kvitto"))
    assert not matcher.matches(facts(subject="Faktura"))
    with pytest.raises(MatcherValueError, match="invalid regular expression") as error:
        SubjectMatcher.from_config(["ok", "(unclosed"])
    assert error.value.subkey == "[1]"
    with pytest.raises(MatcherValueError, match="matches an empty subject"):
        SubjectMatcher.from_config("(faktura)?")


def test_header_tests_indexed_headers_and_envelope_fields() -> None:
    matcher = HeaderMatcher.from_config(
        [{"name": "List-Id", "pattern": "nyhetsbrev"}, {"name": "to", "pattern": "@promix"}]
    )
    assert matcher.matches(facts(headers={"list-id": "<Nyhetsbrev.example.se>"}))
    assert matcher.matches(facts(to_addrs=("info@promix.se",)))
    assert not matcher.matches(facts(to_addrs=("x@y.se",)))
    present = HeaderMatcher.from_config({"name": "auto-submitted", "pattern": "."})
    assert not present.matches(facts())
    assert present.matches(facts(headers={"auto-submitted": "auto-generated"}))
    with pytest.raises(MatcherValueError, match="not indexed") as error:
        HeaderMatcher.from_config(
            [{"name": "list-id", "pattern": "."}, {"name": "x-spam", "pattern": "yes"}]
        )
    assert error.value.subkey == "[1].name"
    assert ", ".join(HEADER_NAMES) in str(error.value)
    with pytest.raises(MatcherValueError, match="missing key 'pattern'"):
        HeaderMatcher.from_config({"name": "list-id"})
    with pytest.raises(MatcherValueError, match="unknown key 'value'; known keys: name, pattern"):
        HeaderMatcher.from_config({"name": "list-id", "pattern": ".", "value": 1})
    with pytest.raises(MatcherValueError, match=r"unknown key 'patern'; did you mean 'pattern'\?"):
        HeaderMatcher.from_config({"name": "list-id", "patern": "."})


def test_keyword_matches_ignoring_case_and_refuses_invalid_atoms() -> None:
    matcher = KeywordMatcher.from_config("$Faktura")
    assert matcher.matches(facts(keywords=frozenset({"$faktura"})))
    assert not matcher.matches(facts())
    with pytest.raises(MatcherValueError, match="not a valid IMAP keyword"):
        KeywordMatcher.from_config("två ord")


@pytest.mark.parametrize("value", [12, [], [1], {"a": 1}, "", ["  "], True])
def test_string_kinds_reject_wrong_shapes(value: object) -> None:
    for kind in ("folder", "sender", "recipient", "subject", "keyword"):
        with pytest.raises(MatcherValueError):
            MATCHERS[kind].from_config(value)


def test_matchers_are_values() -> None:
    one: Mapping[str, object] = {"a": FolderMatcher(("INBOX",))}
    assert one["a"] == FolderMatcher(("INBOX",))
    assert hash(FolderMatcher(("INBOX",))) == hash(FolderMatcher(("INBOX",)))
    assert Policy(rules=(BOOKKEEPING,)) == Policy(rules=(BOOKKEEPING,))
