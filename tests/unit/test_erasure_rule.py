"""The erasure rule (``policy.erasure``) and the pure parts of data-subject requests:
what bars erasure, which rules are legal obligations, and how a person is matched."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhygiene.errors import InputError
from mailhygiene.policy import (
    Action,
    Anchor,
    CaseLink,
    Duration,
    HeaderMatcher,
    HeaderTest,
    MessageFacts,
    Policy,
    ReasonKind,
    RetentionRule,
    SubjectMatcher,
    decide,
)
from mailhygiene.policy.erasure import ErasureCheck, bars_erasure
from mailhygiene.subjects import _csv_cell, _prefilter, check_terms, parse_person

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
YOUNG = NOW - timedelta(days=3)


def facts(**changes: Any) -> MessageFacts:
    base = MessageFacts(
        message_key=1,
        account="support",
        folder="INBOX",
        internal_date=YOUNG,
        date_header=YOUNG,
        size=1000,
        from_addr="anna@example.se",
        to_addrs=("support@promix.example",),
        cc_addrs=(),
        subject="Fråga",
        headers={},
        keywords=frozenset(),
    )
    return dataclasses.replace(base, **changes)


def rule(
    name: str, keep: str, *matchers: Any, source: str = "", anchor: Anchor = Anchor.RECEIVED
) -> RetentionRule:
    return RetentionRule(name, Duration.parse(keep), anchor, tuple(matchers), source=source)


BOOKKEEPING = rule(
    "bookkeeping",
    "7y",
    SubjectMatcher(("faktura",)),
    source="bokföringslagen 7 kap. 2 §",
    anchor=Anchor.END_OF_YEAR,
)
NEWSLETTERS = rule(
    "newsletters", "30d", HeaderMatcher((HeaderTest("list-id", "."),)), source="PROMIX policy"
)
VIP = rule("vip", "2y", SubjectMatcher(("vip",)))  # longer, but no source: a preference
POLICY = Policy(rules=(BOOKKEEPING, NEWSLETTERS, VIP))
CHECK = ErasureCheck(POLICY)


def test_only_sourced_rules_longer_than_the_default_are_obligations() -> None:
    assert bars_erasure(BOOKKEEPING, POLICY)
    assert not bars_erasure(NEWSLETTERS, POLICY)  # shorter than the default: housekeeping
    assert not bars_erasure(VIP, POLICY)  # no source
    assert not bars_erasure(rule("half", "180d", SubjectMatcher(("x",)), source="s"), POLICY)
    assert bars_erasure(rule("long", "181d", SubjectMatcher(("x",)), source="s"), POLICY)
    assert CHECK.obligations == (BOOKKEEPING,)


def test_young_ordinary_mail_may_be_erased_though_retention_keeps_it() -> None:
    assert decide(facts(), POLICY, NOW).action is Action.KEEP
    assert CHECK.bar(facts(), NOW) is None
    assert CHECK.bar(facts(subject="VIP-kund"), NOW) is None
    assert CHECK.bar(facts(headers={"list-id": "<n.example>"}), NOW) is None
    assert CHECK.bar(facts(internal_date=NOW + timedelta(days=2)), NOW) is None  # future date


@pytest.mark.parametrize(
    ("changes", "kind", "name"),
    [
        ({"holds": ("tvist",)}, ReasonKind.HOLD, "tvist"),
        ({"cases": (CaseLink("REK-1", True, None),)}, ReasonKind.CASE_OPEN, "REK-1"),
        ({"keywords": frozenset({"$reklamation"})}, ReasonKind.CASE_KEYWORD, "$Reklamation"),
        (
            {"cases": (CaseLink("REK-2", False, NOW - timedelta(days=10)),)},
            ReasonKind.CASE_CLOSED,
            "REK-2",
        ),
        ({"subject": "Faktura 12"}, ReasonKind.RULE, "bookkeeping"),
        (
            {"subject": "Faktura 12", "internal_date": None, "date_header": None},
            ReasonKind.NO_DATE,
            "date",
        ),
    ],
)
def test_holds_cases_and_obligations_bar_erasure(
    changes: dict[str, Any], kind: ReasonKind, name: str
) -> None:
    bar = CHECK.bar(facts(**changes), NOW)
    assert bar is not None
    assert (bar.reason.kind, bar.reason.name) == (kind, name)


def test_bars_end_when_their_period_ends() -> None:
    closed_long_ago = facts(cases=(CaseLink("REK-3", False, NOW - timedelta(days=91)),))
    assert CHECK.bar(closed_long_ago, NOW) is None
    invoice = facts(subject="Faktura", internal_date=datetime(2018, 5, 1, tzinfo=UTC))
    assert CHECK.bar(invoice, NOW) is None  # 7 years from the end of 2018 are over
    recent_invoice = facts(subject="Faktura")
    bar = CHECK.bar(recent_invoice, NOW)
    assert bar is not None
    assert bar.until == datetime(2033, 12, 31, 23, tzinfo=UTC)
    assert CHECK.bar(facts(internal_date=None, date_header=None), NOW) is None  # no duty


@given(
    held=st.booleans(),
    open_case=st.booleans(),
    invoice=st.booleans(),
    age=st.integers(min_value=0, max_value=4000),
)
def test_erasure_never_removes_what_a_hold_or_open_case_keeps(
    held: bool, open_case: bool, invoice: bool, age: int
) -> None:
    received = NOW - timedelta(days=age)
    message = facts(
        internal_date=received,
        holds=("h",) if held else (),
        cases=(CaseLink("REK-9", True, None),) if open_case else (),
        subject="Faktura" if invoice else "Hej",
    )
    bar = CHECK.bar(message, NOW)
    if held or open_case:
        assert bar is not None
    if decide(message, POLICY, NOW).action is Action.PURGE:
        assert bar is None  # whatever a purge may remove, an erasure may too


# ---------------------------------------------------------------------------- the person


def test_addresses_are_parsed_and_lower_cased() -> None:
    assert parse_person(" Anna <Anna.Svensson@Example.SE> ").address == "anna.svensson@example.se"
    assert parse_person("<anna@x.se>").address == "anna@x.se"
    for bad in ("anna", "@x.se", "anna@", "an na@x.se", "a@b\r\nc", "a@x.se, b@x.se"):
        with pytest.raises(InputError):
            parse_person(bad)


def test_plus_addressing_matches_both_ways_only_when_asked() -> None:
    exact = parse_person("anna@x.se")
    assert exact.matches("anna@x.se")
    assert not exact.matches("anna+shop@x.se")
    assert not exact.matches("hanna@x.se")
    plus = parse_person("anna+news@x.se", plus_addressing=True)
    assert plus.matches("anna@x.se")
    assert plus.matches("anna+shop@x.se")
    assert not plus.matches("anna@y.se")
    assert not plus.matches("annab+x@x.se")
    assert not parse_person("+x@x.se", plus_addressing=True).matches("@x.se")


def test_terms_and_prefilters() -> None:
    assert check_terms([" Anna Svensson ", "Anna Svensson", "19800101-1234"]) == (
        "Anna Svensson",
        "19800101-1234",
    )
    for bad in ("", "a\nb", "x" * 201):
        with pytest.raises(InputError):
            check_terms([bad])
    assert _prefilter(["Anna", "Åsa Öberg"]) == ["Anna", "berg"]
    assert _prefilter(["Anna", "Åö"]) == []  # a term without ASCII: scan everything


def test_csv_cells_never_start_a_formula() -> None:
    assert _csv_cell("=SUM(A1)") == "'=SUM(A1)"
    assert _csv_cell("@x") == "'@x"
    assert _csv_cell("Faktura") == "Faktura"
    assert _csv_cell(None) == ""
