"""The search query language of ``mailhygiene search``, legal holds and data-subject requests.

A query is whitespace-separated terms, all of which must match (AND)::

    from:anna@example.com subject:"trasig leverans" after:2025-01-01 -folder:Trash leverans

``field:value`` terms use the fields in :data:`FIELDS`; a bare word (or a quoted phrase)
is free text, matching the subject, the sender or any recipient; a leading ``-`` negates
a term. A value is either bare (no whitespace, no ``"``; backslashes are literal) or
double-quoted, where ``\\"`` and ``\\\\`` stand for ``"`` and ``\\``. Field names are
case-insensitive. Control characters are refused everywhere except as separators.

Dates follow IMAP SEARCH (RFC 3501 §6.4.4), read in the policy time zone the caller
passes: ``before:D`` is BEFORE (received before the start of day D), ``after:D`` is
SINCE (received on day D or later — *not* "after the end of D"), ``on:D`` is ON
(received during day D). Sizes follow LARGER and SMALLER: ``larger:N`` means strictly
more than N octets, ``smaller:N`` strictly fewer; ``k``, ``M``, ``G`` are powers of 1024.

Parsing never builds SQL: :func:`parse_query` returns a frozen :class:`Query` that the
store translates with bound parameters, and :func:`matches` evaluates it in memory.
Every malformed input raises :class:`~mailhygiene.errors.InputError` naming the term
and what was expected; nothing else escapes. ``parse_query(q.describe()) == q``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from mailhygiene.errors import InputError

__all__ = [
    "FIELDS",
    "MAX_SIZE",
    "Field",
    "Query",
    "SearchableMessage",
    "Term",
    "day_start",
    "matches",
    "parse_query",
]


class Field(StrEnum):
    """What a term looks at. ``TEXT`` is a bare word: subject, sender or recipients."""

    TEXT = "text"
    FROM = "from"
    TO = "to"
    CC = "cc"
    ADDR = "addr"
    SUBJECT = "subject"
    FOLDER = "folder"
    ACCOUNT = "account"
    KEYWORD = "keyword"
    BEFORE = "before"
    AFTER = "after"
    ON = "on"
    LARGER = "larger"
    SMALLER = "smaller"
    MSGID = "msgid"
    CASE = "case"
    THREAD = "thread"


FIELDS: tuple[str, ...] = tuple(f.value for f in Field if f is not Field.TEXT)
"""Field names a user may write before a colon."""

_DATE_FIELDS = frozenset({Field.BEFORE, Field.AFTER, Field.ON})
_SIZE_FIELDS = frozenset({Field.LARGER, Field.SMALLER})

MAX_SIZE = 2**63 - 1
"""Largest size accepted: what a signed 64-bit database column holds."""

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"([0-9]{1,19})([kmg]?)b?", re.IGNORECASE)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FIELD_NAME = re.compile(r"([^\W\d_]+):")
# RFC 3501 §9: flag-keyword = atom; ATOM-CHAR is any CHAR (%x01-7F) except
# "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]".
_ATOM = re.compile(r"[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")

_EXPECTED = {
    Field.FROM: "an address or part of one, e.g. from:anna@example.com",
    Field.TO: "an address or part of one, e.g. to:support@example.com",
    Field.CC: "an address or part of one, e.g. cc:anna@example.com",
    Field.ADDR: "an address or part of one, e.g. addr:example.com",
    Field.SUBJECT: 'text, e.g. subject:"trasig leverans"',
    Field.FOLDER: "a folder name, e.g. folder:INBOX",
    Field.ACCOUNT: "an account name, e.g. account:support",
    Field.KEYWORD: "an IMAP keyword, e.g. keyword:$Rek_REK-2025-0042",
    Field.BEFORE: "a date YYYY-MM-DD, e.g. before:2025-01-31",
    Field.AFTER: "a date YYYY-MM-DD, e.g. after:2025-01-01",
    Field.ON: "a date YYYY-MM-DD, e.g. on:2025-01-15",
    Field.LARGER: "a size like 500, 10k, 2M or 1G, e.g. larger:10M",
    Field.SMALLER: "a size like 500, 10k, 2M or 1G, e.g. smaller:100k",
    Field.MSGID: "a Message-ID, e.g. msgid:<abc123@example.com>",
    Field.CASE: "a case reference, e.g. case:REK-2025-0042",
    Field.THREAD: "a thread id, e.g. thread:20250114T093000Z-3f9a1c0b7d2e4f60a1b2",
}


@dataclass(frozen=True, slots=True)
class Term:
    """One condition: ``field`` has ``value`` (or, when ``negated``, does not).

    Values are typed and canonical: ``date`` for date fields, ``int`` octets for size
    fields, otherwise a non-empty ``str`` without control characters; Message-IDs are
    lower-cased without ``<>``, case references upper-cased. Constructing a Term that
    breaks this raises ``ValueError``, so every Term can be described and re-parsed.
    """

    field: Field
    value: str | date | int
    negated: bool = False

    def __post_init__(self) -> None:
        problem = _value_problem(self.field, self.value)
        if problem is not None:
            raise ValueError(f"invalid {self.field.value} term value {self.value!r}: {problem}")

    def describe(self) -> str:
        """Return the term in canonical query syntax."""
        sign = "-" if self.negated else ""
        value = _render_value(self.field, self.value)
        return f"{sign}{value}" if self.field is Field.TEXT else f"{sign}{self.field}:{value}"


@dataclass(frozen=True, slots=True)
class Query:
    """All of ``terms`` must match. An empty Query matches everything; the parser never
    returns one."""

    terms: tuple[Term, ...]

    def describe(self) -> str:
        """Return the query in canonical syntax; ``parse_query`` gives it back."""
        return " ".join(term.describe() for term in self.terms)


@dataclass(frozen=True, slots=True)
class SearchableMessage:
    """What a query can look at in one indexed message.

    Addresses, keywords and case refs are as the index stores them; ``internal_date``
    must be tz-aware (UTC) or None when unknown; ``message_id`` is normalised.
    """

    account: str
    folder: str
    from_addr: str
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    subject: str
    keywords: tuple[str, ...]
    internal_date: datetime | None
    size: int
    message_id: str
    case_refs: tuple[str, ...]
    thread_id: str | None


def parse_query(text: str) -> Query:
    """Parse query text into a :class:`Query`; see the module docstring for the syntax.

    Raises :class:`InputError` for an empty query, unknown fields, empty values, bad
    dates or sizes, unterminated or misplaced quotes and control characters. An empty
    query is refused rather than read as "everything": a data-subject erasure must not
    select the whole mailbox by accident.
    """
    terms: list[Term] = []
    position, end = 0, len(text)
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position >= end:
            break
        term, position = _parse_term(text, position)
        terms.append(term)
    if not terms:
        raise InputError(
            "empty query — give at least one term, e.g. from:anna@example.com; "
            f"fields: {', '.join(FIELDS)}"
        )
    return Query(tuple(terms))


def day_start(day: date, tz: tzinfo) -> datetime:
    """Return the instant (UTC) at which ``day`` begins in the time zone ``tz``.

    This is the boundary ``before:``/``after:``/``on:`` compare against; the store uses
    it too so that SQL and :func:`matches` agree. A midnight that does not exist (a DST
    gap) resolves as :mod:`zoneinfo` does, with the offset in force before the gap.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def matches(query: Query, message: SearchableMessage, *, tz: tzinfo) -> bool:
    """Tell whether a message satisfies every term of ``query``.

    Text comparisons are case-insensitive (``str.casefold``) substring matches for
    subject and free text, as IMAP SEARCH does (RFC 3501 §6.4.4). An address value with
    an ``@`` after its first character is a whole address and must equal one address
    (``from:anna@example.com`` never matches ``joanna@example.com`` — erasure requests
    depend on it); otherwise it is a substring (``from:example.com``, ``to:@example``,
    ``from:anna``). Folder, account and thread ids match exactly (``INBOX``
    case-insensitively, RFC 3501 §5.1); keywords and case refs match whole values,
    case-insensitively. A message with unknown ``internal_date`` satisfies no date term
    (so ``-before:D`` matches it).
    """
    if message.internal_date is not None and message.internal_date.utcoffset() is None:
        raise ValueError("SearchableMessage.internal_date must be tz-aware")
    return all(_term_matches(term, message, tz) != term.negated for term in query.terms)


def _term_matches(term: Term, message: SearchableMessage, tz: tzinfo) -> bool:
    field, value = term.field, term.value
    if isinstance(value, date):
        received = message.internal_date
        if received is None:
            return False
        start = day_start(value, tz)
        if field is Field.BEFORE:
            return received < start
        if field is Field.AFTER:
            return received >= start
        return start <= received < day_start(value + timedelta(days=1), tz)
    if isinstance(value, int):
        return message.size > value if field is Field.LARGER else message.size < value
    needle = value.casefold()
    if field is Field.TEXT:
        haystacks = (message.subject, message.from_addr, *message.to_addrs)
        return any(needle in hay.casefold() for hay in haystacks)
    if field in (Field.FROM, Field.TO, Field.CC, Field.ADDR):
        addresses = {
            Field.FROM: (message.from_addr,),
            Field.TO: message.to_addrs,
            Field.CC: message.cc_addrs,
            Field.ADDR: (message.from_addr, *message.to_addrs, *message.cc_addrs),
        }[field]
        if "@" in needle[1:]:  # a whole address: anna@x must not match joanna@x
            return any(needle == address.casefold() for address in addresses)
        return any(needle in address.casefold() for address in addresses)
    if field is Field.SUBJECT:
        return needle in message.subject.casefold()
    if field is Field.FOLDER:
        if value.isascii() and value.upper() == "INBOX":
            return message.folder.isascii() and message.folder.upper() == "INBOX"
        return message.folder == value
    if field is Field.ACCOUNT:
        return message.account == value
    if field is Field.KEYWORD:
        return any(keyword.casefold() == needle for keyword in message.keywords)
    if field is Field.MSGID:
        return message.message_id == value
    if field is Field.CASE:
        return any(ref.upper() == value for ref in message.case_refs)
    return message.thread_id == value


# -- parsing ---------------------------------------------------------------------------


def _parse_term(text: str, start: int) -> tuple[Term, int]:
    """Parse one term starting at ``start`` (not whitespace); return it and where it ends."""
    position = start
    negated = text[position] == "-"
    if negated:
        position += 1
        if position >= len(text) or text[position].isspace():
            raise InputError(
                "a lone '-' — put the term to exclude right after it, e.g. -folder:Trash"
            )
    field = Field.TEXT
    named = _FIELD_NAME.match(text, position)
    if named is not None:
        name = named.group(1)
        field = _field_named(name, _term_at(text, start))
        position = named.end()
    raw, position = _read_value(text, position, start)
    term_text = text[start:position]
    if not raw:
        if field is Field.TEXT:
            raise InputError(f"empty phrase in {_show(term_text)} — put text between the quotes")
        raise InputError(f"empty value in {_show(term_text)} — expected {_EXPECTED[field]}")
    bad = _control_character(raw)
    if bad is not None:
        raise InputError(f"control character U+{ord(bad):04X} in {_show(term_text)} — remove it")
    value = _typed_value(field, raw, term_text)
    problem = _value_problem(field, value)
    if problem is not None:  # normalising produced something unusable (e.g. upper-casing)
        raise InputError(f"bad value in {_show(term_text)}: {problem}")
    return Term(field, value, negated), position


def _field_named(name: str, term_text: str) -> Field:
    lowered = name.lower()
    if lowered in FIELDS:
        return Field(lowered)
    close = difflib.get_close_matches(lowered, FIELDS, n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'?" if close else " —"
    raise InputError(
        f"unknown field {_show(name)} in {_show(term_text)}{hint} fields: {', '.join(FIELDS)}; "
        f"to search for the text itself, quote it: {_show(_quote(term_text.lstrip('-')))}"
    )


def _read_value(text: str, position: int, start: int) -> tuple[str, int]:
    """Read a bare or quoted value at ``position``; return it and the position after it."""
    end = len(text)
    if position < end and text[position] == '"':
        chars: list[str] = []
        position += 1
        while position < end:
            char = text[position]
            if char == '"':
                position += 1
                if position < end and not text[position].isspace():
                    raise InputError(
                        f"unexpected text after the closing quote in "
                        f"{_show(_term_at(text, start))} — leave a space between terms"
                    )
                return "".join(chars), position
            if char == "\\" and position + 1 < end and text[position + 1] in '"\\':
                position += 1
                char = text[position]
            chars.append(char)
            position += 1
        raise InputError(
            f"unterminated quote in {_show(text[start:])} — "
            'close it with ", e.g. subject:"trasig leverans"'
        )
    value_start = position
    while position < end and not text[position].isspace():
        if text[position] == '"':
            raise InputError(
                f"unexpected '\"' inside {_show(_term_at(text, start))} — "
                'quote the whole value, e.g. subject:"trasig leverans"'
            )
        position += 1
    return text[value_start:position], position


def _typed_value(field: Field, raw: str, term_text: str) -> str | date | int:
    if field in _DATE_FIELDS:
        found = _DATE.fullmatch(raw)
        try:
            if found is None:
                raise ValueError(raw)
            return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        except ValueError:
            raise InputError(
                f"bad date {_show(raw)} in {_show(term_text)} — expected {_EXPECTED[field]}"
            ) from None
    if field in _SIZE_FIELDS:
        size = _SIZE.fullmatch(raw)
        if size is None:
            raise InputError(
                f"bad size {_show(raw)} in {_show(term_text)} — expected {_EXPECTED[field]}"
            )
        octets = int(size.group(1)) * _UNITS[size.group(2).lower()]
        if octets > MAX_SIZE:
            raise InputError(
                f"size {_show(raw)} in {_show(term_text)} is too large — at most {MAX_SIZE} octets"
            )
        return octets
    if field is Field.MSGID:
        value = raw.lower().strip("<>")
        if not value:
            raise InputError(f"empty value in {_show(term_text)} — expected {_EXPECTED[field]}")
        return value
    if field is Field.CASE:
        return raw.upper()
    if field is Field.KEYWORD and not _ATOM.fullmatch(raw):
        raise InputError(
            f"bad keyword {_show(raw)} in {_show(term_text)} — IMAP keywords are ASCII "
            'without spaces or ( ) { } % * " \\ ] (RFC 3501 §9); expected '
            f"{_EXPECTED[field]}"
        )
    return raw


def _value_problem(field: Field, value: object) -> str | None:
    """Why ``value`` is not a canonical value for ``field``, or None when it is."""
    if field in _DATE_FIELDS:
        ok = isinstance(value, date) and not isinstance(value, datetime)
        return None if ok else "expected a datetime.date"
    if field in _SIZE_FIELDS:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE
        return None if ok else f"expected an int from 0 to {MAX_SIZE}"
    if not isinstance(value, str):
        return "expected a str"
    if not value:
        return "must not be empty"
    if _control_character(value) is not None:
        return "contains a control character"
    if field is Field.MSGID and (value != value.lower() or value[0] == "<" or value[-1] == ">"):
        return "expected a normalised Message-ID (lower-case, without <>)"
    if field is Field.CASE and value != value.upper():
        return "expected an upper-case case reference"
    if field is Field.KEYWORD and not _ATOM.fullmatch(value):
        return "expected an IMAP atom (RFC 3501 §9)"
    return None


def _control_character(value: str) -> str | None:
    """The first control or lone-surrogate character (Cc, Cs) in ``value``, if any.

    Refused because they cannot be stored (PostgreSQL text rejects NUL; surrogates do
    not encode as UTF-8) and never occur in decoded subjects or addresses.
    """
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None


# -- rendering -------------------------------------------------------------------------


def _render_value(field: Field, value: str | date | int) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        for unit, factor in (("G", 1024**3), ("M", 1024**2), ("k", 1024)):
            if value and value % factor == 0:
                return f"{value // factor}{unit}"
        return str(value)
    needs_quotes = any(char.isspace() or char == '"' for char in value)
    if field is Field.TEXT:
        # Bare free text must not read as a negation or as a field name.
        needs_quotes = needs_quotes or value[0] == "-" or ":" in value
    return _quote(value) if needs_quotes else value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _term_at(text: str, start: int) -> str:
    """The raw term starting at ``start``, up to the next whitespace (for messages)."""
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end]


def _show(fragment: str, limit: int = 60) -> str:
    """Quote user text for an error message: shortened, control characters escaped."""
    if len(fragment) > limit:
        fragment = fragment[: limit - 1] + "…"
    shown = "".join(
        f"\\x{ord(char):02x}" if unicodedata.category(char) in ("Cc", "Cs") else char
        for char in fragment
    )
    return f"'{shown}'"
