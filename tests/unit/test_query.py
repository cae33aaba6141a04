"""The search query language: parsing, errors that help, canonical text, evaluation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailhygiene.errors import InputError
from mailhygiene.query import (
    FIELDS,
    MAX_SIZE,
    Field,
    Query,
    SearchableMessage,
    Term,
    day_start,
    matches,
    parse_query,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def terms(text: str) -> tuple[Term, ...]:
    return parse_query(text).terms


# -- parsing -------------------------------------------------------------------------


def test_full_example() -> None:
    query = parse_query(
        'from:anna@example.com subject:"trasig leverans" -folder:Trash leverans '
        "after:2025-01-01 before:2025-02-01 larger:10k case:rek-2025-0042"
    )
    assert query.terms == (
        Term(Field.FROM, "anna@example.com"),
        Term(Field.SUBJECT, "trasig leverans"),
        Term(Field.FOLDER, "Trash", negated=True),
        Term(Field.TEXT, "leverans"),
        Term(Field.AFTER, date(2025, 1, 1)),
        Term(Field.BEFORE, date(2025, 2, 1)),
        Term(Field.LARGER, 10 * 1024),
        Term(Field.CASE, "REK-2025-0042"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("to:kund@example.se", Term(Field.TO, "kund@example.se")),
        ("cc:chef", Term(Field.CC, "chef")),
        ("addr:example.com", Term(Field.ADDR, "example.com")),
        ("account:support", Term(Field.ACCOUNT, "support")),
        ("keyword:$Rek_REK-2025-0042", Term(Field.KEYWORD, "$Rek_REK-2025-0042")),
        ("on:2025-03-04", Term(Field.ON, date(2025, 3, 4))),
        ("smaller:2M", Term(Field.SMALLER, 2 * 1024**2)),
        ("larger:1G", Term(Field.LARGER, 1024**3)),
        ("larger:500", Term(Field.LARGER, 500)),
        ("larger:10kb", Term(Field.LARGER, 10 * 1024)),
        ("larger:0", Term(Field.LARGER, 0)),
        ("msgid:<ABC.123@Example.COM>", Term(Field.MSGID, "abc.123@example.com")),
        ("msgid:abc@x", Term(Field.MSGID, "abc@x")),
        ("thread:20250114T093000Z-1ead", Term(Field.THREAD, "20250114T093000Z-1ead")),
        ("FROM:anna", Term(Field.FROM, "anna")),  # field names are case-insensitive
        ("subject:re:hej", Term(Field.SUBJECT, "re:hej")),  # only the first colon
        ("subject:-x", Term(Field.SUBJECT, "-x")),
        ("folder:INBOX\\Sub", Term(Field.FOLDER, "INBOX\\Sub")),  # bare backslash is literal
        ('"trasig leverans"', Term(Field.TEXT, "trasig leverans")),
        ('-"trasig leverans"', Term(Field.TEXT, "trasig leverans", negated=True)),
        ('subject:"say \\"hi\\" \\\\ bye"', Term(Field.SUBJECT, 'say "hi" \\ bye')),
        ('subject:"C:\\temp"', Term(Field.SUBJECT, "C:\\temp")),
        ("12:30", Term(Field.TEXT, "12:30")),  # digits before a colon are not a field
        ("räksmörgås", Term(Field.TEXT, "räksmörgås")),
        ("O'Brien", Term(Field.TEXT, "O'Brien")),
    ],
)
def test_single_terms(text: str, expected: Term) -> None:
    assert terms(text) == (expected,)


def test_any_whitespace_separates_terms() -> None:
    assert terms("from:a\r\nto:b\t\u3000hej") == (
        Term(Field.FROM, "a"),
        Term(Field.TO, "b"),
        Term(Field.TEXT, "hej"),
    )


def test_quoted_values_keep_inner_whitespace() -> None:
    assert terms('subject:"  två  mellanslag "') == (Term(Field.SUBJECT, "  två  mellanslag "),)


def test_sql_looking_text_is_just_text() -> None:
    assert terms('"\'; DROP TABLE messages; --"') == (
        Term(Field.TEXT, "'; DROP TABLE messages; --"),
    )
    assert terms("subject:';DROP") == (Term(Field.SUBJECT, "';DROP"),)


# -- errors --------------------------------------------------------------------------


def error(text: str) -> str:
    with pytest.raises(InputError) as caught:
        parse_query(text)
    return str(caught.value)


def test_unknown_field_names_the_term_and_suggests() -> None:
    message = error("subject:x form:anna")
    assert message.startswith("unknown field 'form' in 'form:anna' — did you mean 'from'?")
    assert "fields: from, to, cc" in message
    assert '"form:anna"' in message  # how to search for it as text


def test_unknown_field_without_a_close_match_lists_the_fields() -> None:
    message = error("zzz:1")
    assert "did you mean" not in message
    assert "fields: " + ", ".join(FIELDS) in message


def test_non_ascii_field_names_are_fields_too() -> None:
    assert "unknown field 'ämne'" in error("ämne:leverans")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty query"),
        ("   \r\n ", "empty query"),
        ("from:", "empty value in 'from:' — expected an address"),
        ("from: anna", "empty value in 'from:'"),
        ('subject:""', "empty value in 'subject:\"\"'"),
        ('""', "empty phrase"),
        ("msgid:<>", "empty value in 'msgid:<>'"),
        ("before:2025-13-01", "bad date '2025-13-01' in 'before:2025-13-01' — expected a date"),
        ("after:2025-02-30", "bad date"),
        ("on:20250101", "bad date '20250101'"),
        ("on:2025-W01-1", "bad date"),
        ("on:٢٠٢٥-٠١-٠١", "bad date"),  # non-ASCII digits
        ("before:0000-01-01", "bad date"),
        ("larger:1.5M", "bad size '1.5M' in 'larger:1.5M' — expected a size like"),
        ("larger:-5", "bad size"),
        ("larger:10T", "bad size"),
        ("smaller:1_000", "bad size"),
        ("larger:99999999999999999999", "bad size"),
        ("larger:9999999999G", "too large"),
        ('subject:"trasig leverans', "unterminated quote in 'subject:\"trasig leverans'"),
        ('"abc\\"', "unterminated quote"),
        ('subject:"a"b', "unexpected text after the closing quote"),
        ('subject:a"b', "unexpected '\"' inside 'subject:a\"b'"),
        ("-", "a lone '-'"),
        ("from:a - to:b", "a lone '-'"),
        ("keyword:a(b", "bad keyword 'a(b'"),
        ("keyword:\\Seen", "bad keyword"),
        ("keyword:räk", "bad keyword"),
        ("from:a\x00b", "control character U+0000 in 'from:a\\x00b'"),
        ('subject:"a\tb"', "control character U+0009"),
        ('subject:"a\r\nb"', "control character U+000D"),
        ("http://example.com", "unknown field 'http'"),
    ],
)
def test_errors_name_the_term_and_the_expectation(text: str, needle: str) -> None:
    assert needle in error(text)


def test_error_text_is_shortened_and_escaped() -> None:
    message = error("subject:" + "x" * 200 + '"')
    assert "…" in message
    assert len(message) < 300


# -- canonical text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("FROM:Anna  subject:hej", "from:Anna subject:hej"),
        ("larger:10240 smaller:2097152 larger:1000", "larger:10k smaller:2M larger:1000"),
        ("msgid:<A@B>", "msgid:a@b"),
        ("case:rek-1", "case:REK-1"),
        ('"12:30" -"-x" x', '"12:30" -"-x" x'),
        ('subject:"a b" subject:"x"', 'subject:"a b" subject:x'),
        ('subject:"say \\"hi\\""', 'subject:"say \\"hi\\""'),
        ("subject:a\\b", "subject:a\\b"),
        ('subject:"a\\b c"', 'subject:"a\\\\b c"'),
    ],
)
def test_describe_is_canonical_and_round_trips(text: str, canonical: str) -> None:
    query = parse_query(text)
    assert query.describe() == canonical
    assert parse_query(canonical) == query


def test_terms_refuse_non_canonical_values() -> None:
    cases: list[tuple[Field, Any]] = [
        (Field.BEFORE, "2025-01-01"),
        (Field.BEFORE, datetime(2025, 1, 1, tzinfo=UTC)),
        (Field.LARGER, -1),
        (Field.LARGER, MAX_SIZE + 1),
        (Field.LARGER, True),
        (Field.SUBJECT, ""),
        (Field.SUBJECT, 5),
        (Field.SUBJECT, "a\x00"),
        (Field.MSGID, "<a@b>"),
        (Field.MSGID, "A@B"),
        (Field.CASE, "rek-1"),
        (Field.KEYWORD, "a b"),
    ]
    for field, value in cases:
        with pytest.raises(ValueError, match="invalid"):
            Term(field, value)


# -- evaluation ----------------------------------------------------------------------

MESSAGE = SearchableMessage(
    account="support",
    folder="INBOX",
    from_addr="anna.svensson@example.se",
    to_addrs=("support@firma.se", "order@firma.se"),
    cc_addrs=("chef@firma.se",),
    subject="SV: Trasig leverans av soffa",
    keywords=("$Rek_REK-2025-0042", "\\Seen"),
    internal_date=datetime(2025, 1, 14, 9, 30, tzinfo=UTC),
    size=20_000,
    message_id="abc@example.se",
    case_refs=("REK-2025-0042",),
    thread_id="20250114T093000Z-1ead36106161efffa5bd",
)


def hit(text: str, message: SearchableMessage = MESSAGE) -> bool:
    return matches(parse_query(text), message, tz=STOCKHOLM)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("leverans", True),
        ("LEVERANS", True),
        ("anna", True),  # free text: sender
        ("order@firma", True),  # free text: a recipient
        ("chef", False),  # free text does not look at Cc
        ("from:anna.svensson@example.se", True),
        ("from:ANNA.SVENSSON@EXAMPLE.SE", True),
        ("from:example.se", True),
        ("from:@example.se", True),
        ("from:svensson", True),
        ("from:a.svensson@example.se", False),  # a whole address is not a substring
        ("to:order@firma.se", True),
        ("to:chef@firma.se", False),
        ("cc:chef@firma.se", True),
        ("addr:chef@firma.se", True),
        ("addr:anna.svensson@example.se", True),
        ("addr:nobody@x.se", False),
        ('subject:"trasig leverans"', True),
        ("subject:soffa -subject:stol", True),
        ("folder:INBOX", True),
        ("folder:inbox", True),  # RFC 3501 §5.1: INBOX is case-insensitive
        ("folder:Archive", False),
        ("account:support", True),
        ("account:Support", False),
        ("keyword:$rek_rek-2025-0042", True),
        ("keyword:$Rek_REK-2025-0043", False),
        ("larger:19999 smaller:20001", True),
        ("larger:20000", False),  # RFC 3501 LARGER is strictly larger
        ("smaller:20000", False),
        ("msgid:<ABC@example.se>", True),
        ("case:rek-2025-0042", True),
        ("-case:REK-2025-0042", False),
        ("thread:20250114T093000Z-1ead36106161efffa5bd", True),
        ("thread:20250114T093000Z", False),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert hit(text) is expected


def test_dates_follow_imap_search_in_the_policy_zone() -> None:
    """2024-12-31 23:30 UTC is 00:30 on 1 January in Stockholm."""
    late = replace(MESSAGE, internal_date=datetime(2024, 12, 31, 23, 30, tzinfo=UTC))
    assert not hit("before:2025-01-01", late)
    assert hit("after:2025-01-01", late)  # SINCE: on or after
    assert hit("on:2025-01-01", late)
    assert not hit("on:2024-12-31", late)
    assert hit("before:2025-01-02", late)
    assert not hit("after:2025-01-02", late)
    in_utc = matches(parse_query("on:2024-12-31"), late, tz=UTC)
    assert in_utc


def test_day_boundaries_are_exact() -> None:
    start = day_start(date(2025, 3, 30), STOCKHOLM)  # the DST day: 23 hours long
    assert start == datetime(2025, 3, 29, 23, 0, tzinfo=UTC)
    assert day_start(date(2025, 3, 31), STOCKHOLM) - start == timedelta(hours=23)
    at_start = replace(MESSAGE, internal_date=start)
    just_before = replace(MESSAGE, internal_date=start - timedelta(microseconds=1))
    assert hit("after:2025-03-30", at_start)
    assert hit("on:2025-03-30", at_start)
    assert not hit("before:2025-03-30", at_start)
    assert hit("before:2025-03-30", just_before)
    assert not hit("on:2025-03-30", just_before)


def test_unknown_date_satisfies_no_date_term() -> None:
    undated = replace(MESSAGE, internal_date=None)
    assert not hit("before:2100-01-01", undated)
    assert not hit("after:1900-01-01", undated)
    assert hit("-before:2100-01-01", undated)


def test_naive_dates_are_refused() -> None:
    naive = replace(MESSAGE, internal_date=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="tz-aware"):
        matches(parse_query("before:2025-01-01"), naive, tz=STOCKHOLM)


def test_any_zone_object_works() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert day_start(date(2025, 1, 1), plus_two) == datetime(2024, 12, 31, 22, 0, tzinfo=UTC)


def test_empty_query_object_matches_everything() -> None:
    assert matches(Query(()), MESSAGE, tz=UTC)
