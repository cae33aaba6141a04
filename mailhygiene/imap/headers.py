"""Turn a fetched header block into an ``IndexedMessage``, fast and forgivingly.

This runs once per message on the indexing hot path (100k messages in a few
seconds), so common forms take regex fast paths and the stdlib ``email`` helpers
are used only for the rare forms they exist for (RFC 2047 encoded words, quoted
display names, obsolete date syntax). Nothing here raises on bad input: what cannot
be parsed is recorded in ``problems`` and the message is still indexed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime

from mailhygiene.mailbox import IndexedMessage

# The header fields the index keeps (RFC 5322 §3.6 plus threading and list headers).
INDEX_HEADER_FIELDS: tuple[str, ...] = (
    "MESSAGE-ID",
    "IN-REPLY-TO",
    "REFERENCES",
    "THREAD-INDEX",
    "THREAD-TOPIC",
    "SUBJECT",
    "FROM",
    "TO",
    "CC",
    "REPLY-TO",
    "DATE",
    "LIST-ID",
    "AUTO-SUBMITTED",
    "X-MAILER",
    "CONTENT-TYPE",
)
EXTRA_HEADERS: tuple[str, ...] = ("list-id", "auto-submitted", "x-mailer", "content-type")

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_INTERNALDATE = re.compile(rb"(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_RFC5322_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+"
    r"(\d\d):(\d\d)(?::(\d\d))?\s+([+-])(\d\d)(\d\d)(?:\s*\(.*\))?\s*$"
)
_ANGLE_ADDR = re.compile(r"<\s*([^<>\s]+@[^<>\s]+?)\s*>")
_MSG_ID = re.compile(r"<([^<>]*)>")
_TZ_CACHE: dict[tuple[str, str, str], timezone] = {}


def _tz(sign: str, hours: str, minutes: str) -> timezone:
    key = (sign, hours, minutes)
    tz = _TZ_CACHE.get(key)
    if tz is None:
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        tz = timezone(-delta if sign == "-" else delta)
        _TZ_CACHE[key] = tz
    return tz


def parse_internaldate(raw: bytes) -> datetime | None:
    """Parse an IMAP INTERNALDATE (RFC 3501 §9 ``date-time``) into UTC."""
    match = _INTERNALDATE.search(raw)
    if match is None:
        return None
    day, mon, year, hh, mm, ss, sign, tzh, tzm = match.groups()
    month = _MONTHS.get(mon.decode("ascii").lower())
    if month is None:
        return None
    tz = _tz(sign.decode(), tzh.decode(), tzm.decode())
    try:
        local = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
    except ValueError:
        return None
    return local.astimezone(UTC)


def parse_date_header(value: str) -> datetime | None:
    """Parse an RFC 5322 Date into UTC; ``None`` when it cannot be understood."""
    match = _RFC5322_DATE.match(value)
    if match is not None:
        day, mon, year, hh, mm, ss, sign, tzh, tzm = match.groups()
        month = _MONTHS.get(mon.lower())
        if month is not None:
            try:
                local = datetime(
                    int(year),
                    month,
                    int(day),
                    int(hh),
                    int(mm),
                    int(ss or 0),
                    tzinfo=_tz(sign, tzh, tzm),
                )
                return local.astimezone(UTC)
            except ValueError:
                return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 §3.3: "-0000" means the zone is unknown; UTC is the best reading.
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def split_header_block(block: bytes) -> tuple[dict[str, bytes], list[str]]:
    """Unfold a header block into ``{lower-case name: raw value}``; first occurrence wins.

    Lines without a colon are reported, not fatal. Bare CR and bare LF are both
    accepted as line ends because real mail has both.
    """
    problems: list[str] = []
    fields: dict[str, bytes] = {}
    name: str | None = None
    value_parts: list[bytes] = []
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line:
            continue
        if line[0] in (0x20, 0x09):
            if name is not None:
                value_parts.append(line)
            continue
        if name is not None and name not in fields:
            fields[name] = b" ".join(part.strip() for part in value_parts)
        colon = line.find(b":")
        if colon <= 0:
            name = None
            if "header-without-colon" not in problems:
                problems.append("header-without-colon")
            continue
        name = line[:colon].strip().decode("ascii", "replace").lower()
        value_parts = [line[colon + 1 :]]
    if name is not None and name not in fields:
        fields[name] = b" ".join(part.strip() for part in value_parts)
    return fields, problems


def decode_text(raw: bytes, problems: list[str]) -> str:
    """Bytes of a header value → text: UTF-8, else Latin-1; RFC 2047 words decoded."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            if "8bit-header" not in problems:
                problems.append("8bit-header")
    if "\x00" in text:
        text = text.replace("\x00", "")
        if "nul-in-header" not in problems:
            problems.append("nul-in-header")
    if "=?" in text:
        try:
            return str(make_header(decode_header(text)))
        except (LookupError, UnicodeDecodeError, ValueError, AssertionError):
            if "bad-encoded-word" not in problems:
                problems.append("bad-encoded-word")
    return text


def parse_addresses(value: str) -> tuple[tuple[str, str], ...]:
    """``(display name, lower-case address)`` pairs from an address-list header."""
    if not value.strip():
        return ()
    if '"' not in value and "(" not in value and "\\" not in value:
        if "<" in value:
            if value.count("<") == 1:
                match = _ANGLE_ADDR.search(value)
                if match is not None:
                    name = value[: match.start()].strip()
                    return ((name, match.group(1).lower()),)
        elif "," not in value and ";" not in value and ":" not in value:
            address = value.strip()
            if "@" in address and " " not in address:
                return (("", address.lower()),)
    pairs = []
    for name, address in getaddresses([value]):
        if address:
            pairs.append((name, address.lower()))
    return tuple(pairs)


def normalise_message_id(value: str) -> str:
    """The id inside ``<…>``, lower-cased; a bare id is accepted as it is."""
    match = _MSG_ID.search(value)
    ident = match.group(1) if match else value.strip()
    return ident.strip().lower()


def message_ids(value: str) -> tuple[str, ...]:
    """All ``<…>`` ids in References/In-Reply-To order, normalised, without repeats."""
    seen: dict[str, None] = {}
    for ident in _MSG_ID.findall(value):
        ident = ident.strip().lower()
        if ident:
            seen.setdefault(ident, None)
    return tuple(seen)


def build_indexed_message(
    *,
    uid: int,
    flags: tuple[str, ...],
    internal_date: datetime | None,
    size: int,
    modseq: int | None,
    header_block: bytes,
) -> IndexedMessage:
    """Parse the header subset of one message into what the index keeps."""
    fields, problems = split_header_block(header_block)

    def text(name: str) -> str:
        raw = fields.get(name)
        return decode_text(raw, problems) if raw else ""

    raw_id = text("message-id")
    message_id = normalise_message_id(raw_id) if raw_id else ""
    if not message_id:
        problems.append("no-message-id")
    from_pairs = parse_addresses(text("from"))
    if not from_pairs and "from" in fields:
        problems.append("from-unparseable")
    date_value = text("date")
    date_header = parse_date_header(date_value) if date_value else None
    date_raw: str | None = None
    if not date_value:
        problems.append("no-date")
    elif date_header is None:
        problems.append("date-unparseable")
        date_raw = date_value[:500]
    in_reply_to = message_ids(text("in-reply-to"))
    extra = {name: text(name) for name in EXTRA_HEADERS if name in fields}
    return IndexedMessage(
        uid=uid,
        flags=flags,
        internal_date=internal_date,
        size=size,
        modseq=modseq,
        message_id=message_id,
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=message_ids(text("references")),
        thread_index=text("thread-index").strip(),
        thread_topic=text("thread-topic"),
        subject=text("subject").strip(),
        from_addr=from_pairs[0][1] if from_pairs else "",
        from_name=from_pairs[0][0] if from_pairs else "",
        to_addrs=tuple(addr for _, addr in parse_addresses(text("to"))),
        cc_addrs=tuple(addr for _, addr in parse_addresses(text("cc"))),
        reply_to=tuple(addr for _, addr in parse_addresses(text("reply-to"))),
        date_header=date_header,
        date_raw=date_raw,
        extra_headers=extra,
        problems=tuple(problems),
    )
