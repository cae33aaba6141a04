"""Turn a fetched header block into an ``IndexedMessage``, fast and forgivingly.

This runs once per message on the indexing hot path (100k messages in a few
seconds), so common forms take regex fast paths and the stdlib ``email`` helpers
are used only for the rare forms they exist for (RFC 2047 encoded words, quoted
display names, obsolete date syntax). Nothing here raises on bad input: what cannot
be parsed is recorded in ``problems`` and the message is still indexed.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
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
_FIELD = re.compile(r"^([^\s:]+)[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.MULTILINE)
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
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
    # Fast path for the fixed layout "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be space-padded).
    if len(raw) == 26 and raw[2:3] == b"-" and raw[6:7] == b"-":
        month = _MONTHS.get(raw[3:6].decode("ascii", "replace").lower())
        if month is not None:
            try:
                local = datetime(
                    int(raw[7:11]),
                    month,
                    int(raw[0:2]),
                    int(raw[12:14]),
                    int(raw[15:17]),
                    int(raw[18:20]),
                    tzinfo=_tz(chr(raw[21]), raw[22:24].decode(), raw[24:26].decode()),
                )
                return local.astimezone(UTC)
            except ValueError:
                pass
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


def split_header_block(block: bytes) -> tuple[dict[str, str], list[str]]:
    """Decode and unfold a header block into ``{lower-case name: value}``; first one wins.

    The block is decoded once (ASCII, else UTF-8, else Latin-1 — reported as
    ``8bit-header``) and scanned by one regex, because this runs for every message
    indexed. Lines without a colon are skipped (a ``HEADER.FIELDS`` response holds only
    the named fields, so they cannot occur there); bare CR or LF line ends are accepted
    because real mail has both.
    """
    problems: list[str] = []
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            text = block.decode("latin-1")
            problems.append("8bit-header")
    if "\x00" in text:
        text = text.replace("\x00", "")
        problems.append("nul-in-header")
    if "\r" in text and "\r\n" not in text:
        text = text.replace("\r", "\n")
    fields: dict[str, str] = {}
    for raw_name, value in _FIELD.findall(text):
        name = raw_name.lower()
        if name not in fields:
            if "\n" in value:
                value = _FOLDING.sub(" ", value)
            fields[name] = value.strip()
    return fields, problems


def decode_encoded_words(text: str, problems: list[str]) -> str:
    """Decode RFC 2047 encoded words; what cannot be decoded stays as it was, reported.

    Adjacent words in the same charset are joined before decoding (§6.2 allows a
    multi-byte character to be split across words), and the white space between
    adjacent encoded words is dropped (§6.2).
    """
    out: list[str] = []
    pending = bytearray()
    pending_charset = ""
    position = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending:
            try:
                out.append(pending.decode(pending_charset, "replace"))
            except LookupError:
                out.append(pending.decode("latin-1"))
                if "unknown-charset" not in problems:
                    problems.append("unknown-charset")
            pending.clear()
        pending_charset = ""

    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if between and not (pending and between.isspace()):
            flush()
            out.append(between)
        charset = match.group(1).split("*", 1)[0].lower()
        payload = match.group(3)
        try:
            if match.group(2) in "Qq":
                raw = binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
            else:
                raw = base64.b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            flush()
            out.append(match.group(0))
            if "bad-encoded-word" not in problems:
                problems.append("bad-encoded-word")
            position = match.end()
            continue
        if pending and charset != pending_charset:
            flush()
        pending_charset = charset
        pending.extend(raw)
        position = match.end()
    flush()
    out.append(text[position:])
    return "".join(out)


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
    for name, value in fields.items():
        if "=?" in value:
            fields[name] = decode_encoded_words(value, problems)
    get = fields.get

    raw_id = get("message-id", "")
    message_id = normalise_message_id(raw_id) if raw_id else ""
    if not message_id:
        problems.append("no-message-id")
    from_pairs = parse_addresses(get("from", ""))
    if not from_pairs and "from" in fields:
        problems.append("from-unparseable")
    date_value = get("date", "")
    date_header = parse_date_header(date_value) if date_value else None
    date_raw: str | None = None
    if not date_value:
        problems.append("no-date")
    elif date_header is None:
        problems.append("date-unparseable")
        date_raw = date_value[:500]
    reply = get("in-reply-to")
    in_reply_to = message_ids(reply) if reply else ()
    references = get("references")
    extra = {name: fields[name] for name in EXTRA_HEADERS if name in fields}
    to_value, cc_value, reply_to_value = get("to"), get("cc"), get("reply-to")
    return IndexedMessage(
        uid=uid,
        flags=flags,
        internal_date=internal_date,
        size=size,
        modseq=modseq,
        message_id=message_id,
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=message_ids(references) if references else (),
        thread_index=get("thread-index", ""),
        thread_topic=get("thread-topic", ""),
        subject=get("subject", ""),
        from_addr=from_pairs[0][1] if from_pairs else "",
        from_name=from_pairs[0][0] if from_pairs else "",
        to_addrs=tuple(addr for _, addr in parse_addresses(to_value)) if to_value else (),
        cc_addrs=tuple(addr for _, addr in parse_addresses(cc_value)) if cc_value else (),
        reply_to=tuple(addr for _, addr in parse_addresses(reply_to_value))
        if reply_to_value
        else (),
        date_header=date_header,
        date_raw=date_raw,
        extra_headers=extra,
        problems=tuple(problems),
    )
