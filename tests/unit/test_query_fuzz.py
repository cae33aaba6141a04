"""Fuzzing the query parser: any text gives a Query or an InputError, never a traceback;
canonical text round-trips; date terms split time as RFC 3501 SEARCH does.

Hypothesis costs about a millisecond per example before the test body runs, so the
big run draws one byte string per example and maps each byte to a fragment of query
syntax (fields, quotes, backslashes, NUL, CRLF, non-ASCII, SQL): one cheap draw that
still reaches every branch of the parser.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.errors import InputError
from mailhygiene.query import (
    FIELDS,
    MAX_SIZE,
    Field,
    Query,
    SearchableMessage,
    Term,
    matches,
    parse_query,
)

FAST = settings(deadline=None, database=None)

_FRAGMENTS = [
    *(f"{name}:" for name in FIELDS),
    *("FROM:", "Subject:", "form:", "ämne:", "text:", "x:", "1:"),
    *('"', '"', '"', '\\"', "\\", "\\\\", "-", "-", "--", ":", "::", "<", ">", "<>"),
    *(" ", " ", " ", "  ", "\t", "\r\n", "\n", "\x0b", "\x85", "\u2028", "\u3000", "\xa0"),
    *("\x00", "\x01", "\x1b", "\x7f", "\x9f", "\ud800", "\udfff", "\ufeff", "\u200b"),
    *("'; DROP TABLE messages; --", "' OR '1'='1", "%", "_", "%_%", "*", "(", ")", "]"),
    *("2025-01-01", "2025-02-30", "0000-01-01", "9999-12-31", "2025-1-1", "٢٠٢٥"),
    *("0", "10", "10k", "2M", "1G", "1.5M", "-5", "99999999999999999999", "8589934592G"),
    *("REK-2025-0042", "rek-2025-0042", "$Rek_", "\\Seen", "<ABC@Example.COM>"),
    *("räksmörgås", "ÅÄÖ", "ß", "İ", "ﬁ", "😀", "\u0301", "a", "b", "x", "anna@example.com"),
]
_TABLE = [_FRAGMENTS[i % len(_FRAGMENTS)] for i in range(256)]
QUERY_TEXT = st.binary(max_size=24).map(lambda raw: "".join(_TABLE[byte] for byte in raw))


@settings(FAST, max_examples=2000)
@given(QUERY_TEXT)
def test_any_text_parses_or_raises_input_error(text: str) -> None:
    _check(text)


@settings(FAST, max_examples=200)
@given(st.text(max_size=30))
def test_arbitrary_unicode_parses_or_raises_input_error(text: str) -> None:
    _check(text)


def _check(text: str) -> None:
    try:
        query = parse_query(text)
    except InputError as caught:
        message = str(caught)
    else:
        assert query.terms
        assert parse_query(query.describe()) == query
        return
    assert message
    assert all(ch not in message for ch in "\x00\r\n")  # one printable line


_STRINGS = st.text(max_size=10).map(lambda value: "".join(ch for ch in value if ch.isprintable()))
_PLAIN_FIELDS = [
    Field.TEXT, Field.FROM, Field.TO, Field.CC, Field.ADDR, Field.SUBJECT, Field.FOLDER,
    Field.ACCOUNT, Field.THREAD, Field.MSGID, Field.CASE,
]  # fmt: skip


_ATOM_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '(){%*"\\]')


@st.composite
def terms(draw: st.DrawFn) -> Term:
    kind = draw(st.integers(0, 3))
    negated = draw(st.booleans())
    if kind == 0:
        field = draw(st.sampled_from([Field.BEFORE, Field.AFTER, Field.ON]))
        return Term(field, draw(st.dates()), negated)
    if kind == 1:
        unit = draw(st.sampled_from([1, 1, 1024, 1024**2, 1024**3]))
        size = draw(st.integers(0, MAX_SIZE // unit)) * unit
        return Term(draw(st.sampled_from([Field.LARGER, Field.SMALLER])), size, negated)
    if kind == 2:
        keyword = draw(st.text(_ATOM_CHARS, min_size=1, max_size=12))
        return Term(Field.KEYWORD, keyword, negated)
    field = draw(st.sampled_from(_PLAIN_FIELDS))
    value = draw(_STRINGS) + "x"  # never empty
    if field is Field.MSGID:
        value = value.lower().strip("<>") or "x"
    elif field is Field.CASE:
        value = value.upper()
    return Term(field, value, negated)


@settings(FAST, max_examples=200)
@given(st.lists(terms(), min_size=1, max_size=5))
def test_generated_queries_round_trip(generated: list[Term]) -> None:
    query = Query(tuple(generated))
    text = query.describe()
    assert parse_query(text) == query
    assert parse_query(text).describe() == text


ZONES = st.sampled_from(
    [
        UTC,
        ZoneInfo("Europe/Stockholm"),
        ZoneInfo("America/Sao_Paulo"),  # had DST changes at midnight
        timezone(timedelta(hours=-9, minutes=-30)),
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
DAYS = st.dates(min_value=date(1990, 1, 2), max_value=date(2039, 12, 30))


def _received(at: datetime) -> SearchableMessage:
    return SearchableMessage(
        account="a", folder="INBOX", from_addr="", to_addrs=(), cc_addrs=(), subject="",
        keywords=(), internal_date=at, size=0, message_id="", case_refs=(), thread_id=None,
    )  # fmt: skip


@settings(FAST, max_examples=200)
@given(INSTANTS, DAYS, ZONES)
def test_date_terms_split_time(at: datetime, day: date, zone: timezone | ZoneInfo) -> None:
    message = _received(at)

    def hit(field: Field, on: date) -> bool:
        return matches(Query((Term(field, on),)), message, tz=zone)

    assert hit(Field.BEFORE, day) != hit(Field.AFTER, day)  # BEFORE and SINCE split time
    assert hit(Field.ON, day) == (hit(Field.AFTER, day) and hit(Field.BEFORE, day + timedelta(1)))
    assert hit(Field.ON, at.astimezone(zone).date())
