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
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, TypeVar

from mailhygiene.mailbox import IndexedMessage, MessageIdentity

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
# ``_FIELD`` a fifth faster: ASCII white space ends a name; a name that holds other white
# space (which ``_FIELD`` would not match at all) is dropped after a check with ``_NAME``.
_FIELD_ASCII = re.compile(_FIELD.pattern, re.MULTILINE | re.ASCII)
_NAME = re.compile(r"[^\s:]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
# The usual spellings of the fields we fetch, lower-cased without a call per field.
_LOWER_NAMES = {
    spelled: field.lower()
    for field in INDEX_HEADER_FIELDS
    for spelled in (field, field.lower(), "-".join(p.capitalize() for p in field.split("-")))
} | {"Message-ID": "message-id", "Message-Id": "message-id", "X-Mailer": "x-mailer"}
_MONTHS_BYTES = {
    spelled: number
    for name, number in _MONTHS.items()
    for spelled in (name.encode(), name.title().encode(), name.upper().encode())
}
# Offsets from UTC by their wire text ("+0100"); None for UTC itself (the common case).
_OFFSETS: dict[str, timedelta | None] = {}
_DAY = timedelta(days=1)


def _offset(sign: str, hours: str, minutes: str) -> timedelta | None:
    """The offset ``±hhmm`` stands for, subtracted from local time to get UTC.

    Raises ValueError for a zone of 24 hours or more, as ``datetime.timezone`` does."""
    key = sign + hours + minutes
    if key in _OFFSETS:
        return _OFFSETS[key]
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= _DAY:
        raise ValueError(f"UTC offset {key} is not less than 24 hours")
    offset = (-delta if sign == "-" else delta) or None
    if len(_OFFSETS) < 4096:
        _OFFSETS[key] = offset
    return offset


def _utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, offset: timedelta | None
) -> datetime | None:
    """The UTC instant of a local time at ``offset``; None when there is no such instant."""
    try:
        moment = datetime(year, month, day, hour, minute, second, 0, UTC)
        return moment if offset is None else moment - offset
    except (ValueError, OverflowError):
        return None


def parse_internaldate(raw: bytes) -> datetime | None:
    """Parse an IMAP INTERNALDATE (RFC 3501 §9 ``date-time``) into UTC."""
    # Fast path for the fixed layout "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be space-padded).
    if len(raw) == 26 and raw[2:3] == b"-" and raw[6:7] == b"-":
        month = _MONTHS_BYTES.get(raw[3:6])
        if month is None:
            month = _MONTHS.get(raw[3:6].decode("ascii", "replace").lower())
        if month is not None:
            try:
                parts = (
                    int(raw[7:11]),
                    int(raw[0:2]),
                    int(raw[12:14]),
                    int(raw[15:17]),
                    int(raw[18:20]),
                    _offset(chr(raw[21]), raw[22:24].decode(), raw[24:26].decode()),
                )
            except ValueError:
                pass
            else:
                year, day, hour, minute, second, offset = parts
                moment = _utc(year, month, day, hour, minute, second, offset)
                if moment is not None:
                    return moment
    match = _INTERNALDATE.search(raw)
    if match is None:
        return None
    day_b, mon, year_b, hh, mm, ss, sign, tzh, tzm = match.groups()
    month = _MONTHS.get(mon.decode("ascii").lower())
    if month is None:
        return None
    try:
        offset = _offset(sign.decode(), tzh.decode(), tzm.decode())
    except ValueError:
        return None
    return _utc(int(year_b), month, int(day_b), int(hh), int(mm), int(ss), offset)


def parse_date_header(value: str) -> datetime | None:
    """Parse an RFC 5322 Date into UTC; ``None`` when it cannot be understood."""
    match = _RFC5322_DATE.match(value)
    if match is not None:
        day, mon, year, hh, mm, ss, sign, tzh, tzm = match.groups()
        month = _MONTHS.get(mon.lower())
        if month is not None:
            try:
                offset = _offset(sign, tzh, tzm)
            except ValueError:
                return None
            return _utc(int(year), month, int(day), int(hh), int(mm), int(ss) if ss else 0, offset)
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
    adjacent encoded words is dropped (§6.2). Line breaks and NUL that words decode to
    are replaced: never store header-injection-shaped values (PostgreSQL refuses NUL).
    """
    decoded = _decode_encoded(text, problems)
    if decoded is not text and ("\n" in decoded or "\r" in decoded or "\x00" in decoded):
        decoded = decoded.replace("\x00", "").replace("\r", " ").replace("\n", " ")
        if "control-in-encoded-word" not in problems:
            problems.append("control-in-encoded-word")
    return decoded


def _decode_encoded(text: str, problems: list[str]) -> str:
    match = _ENCODED_WORD.search(text)
    if match is None:
        return text
    end = match.end()
    if "=?" not in text[end:]:
        # One encoded word (the usual subject or display name): no joining to consider.
        raw = _word_bytes(match)
        if raw is None:
            if "bad-encoded-word" not in problems:
                problems.append("bad-encoded-word")
            return text
        return text[: match.start()] + _decode_charset(raw, match, problems) + text[end:]
    return _decode_words(text, problems)


def _word_bytes(match: re.Match[str]) -> bytes | None:
    """The bytes an encoded word stands for; None when its Q or B payload is broken."""
    payload = match.group(3)
    try:
        if match.group(2) in "Qq":
            return binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
        return base64.b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_charset(raw: bytes | bytearray, match: re.Match[str], problems: list[str]) -> str:
    charset = match.group(1).split("*", 1)[0].lower()
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        if "unknown-charset" not in problems:
            problems.append("unknown-charset")
        return raw.decode("latin-1")


def _decode_words(text: str, problems: list[str]) -> str:
    """The general case of ``decode_encoded_words``: several words, joined per charset."""
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
        raw = _word_bytes(match)
        if raw is None:
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
            # One "Name <addr>" only: a comma or semicolon means a list (full parser below).
            if value.count("<") == 1 and "," not in value and ";" not in value:
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
    return build_from_fetch(uid, flags, internal_date, size, modseq, header_block)


# Address fields repeat from message to message (the same correspondents, the mailbox's
# own address), so what decoding and parsing them gives is remembered, within bounds.
# Only pure functions of the value are cached, and the problems they report are replayed.
_ADDRESS_FIELDS = frozenset(("from", "to", "cc", "reply-to"))
_CACHE_LIMIT = 20_000
_DECODED_ADDRESS_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {}
_PARSED_ADDRESS_FIELDS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {}


def _decoded_address_field(value: str, problems: list[str]) -> str:
    """``decode_encoded_words(value, problems)``, remembered."""
    known = _DECODED_ADDRESS_FIELDS.get(value)
    if known is None:
        found: list[str] = []
        known = (decode_encoded_words(value, found), tuple(found))
        if len(_DECODED_ADDRESS_FIELDS) >= _CACHE_LIMIT:
            _DECODED_ADDRESS_FIELDS.clear()
        _DECODED_ADDRESS_FIELDS[value] = known
    decoded, kinds = known
    for kind in kinds:
        if kind not in problems:
            problems.append(kind)
    return decoded


def _addresses(value: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``parse_addresses(value)`` and just its addresses, remembered."""
    known = _PARSED_ADDRESS_FIELDS.get(value)
    if known is None:
        pairs = parse_addresses(value)
        known = (pairs, tuple([address for _name, address in pairs]))
        if len(_PARSED_ADDRESS_FIELDS) >= _CACHE_LIMIT:
            _PARSED_ADDRESS_FIELDS.clear()
        _PARSED_ADDRESS_FIELDS[value] = known
    return known


# ``build_from_fetch`` creates IndexedMessage positionally (a third faster than by
# keyword, which matters 100k times a sync); this pins the order it relies on.
_FIELD_ORDER = [
    *("uid", "flags", "internal_date", "size", "modseq", "message_id", "in_reply_to"),
    *("references", "thread_index", "thread_topic", "subject", "from_addr", "from_name"),
    *("to_addrs", "cc_addrs", "reply_to", "date_header", "date_raw", "extra_headers"),
    "problems",
]
if [f.name for f in dataclass_fields(IndexedMessage)] != _FIELD_ORDER:  # pragma: no cover
    raise ImportError("IndexedMessage fields changed: update build_from_fetch")


def build_from_fetch(
    uid: int,
    flags: tuple[str, ...],
    internal_date: datetime | None,
    size: int,
    modseq: int | None,
    header_block: bytes,
) -> IndexedMessage:
    """``build_indexed_message`` with positional arguments, for the FETCH parser's loop.

    The same steps as ``split_header_block``, ``decode_encoded_words``,
    ``normalise_message_id``, ``parse_addresses`` and ``message_ids``, inlined where a
    call per message and field would cost more than the work itself.
    """
    problems: list[str] = []
    try:
        text = header_block.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = header_block.decode("utf-8")
        except UnicodeDecodeError:
            text = header_block.decode("latin-1")
            problems.append("8bit-header")
    if "\x00" in text:
        text = text.replace("\x00", "")
        problems.append("nul-in-header")
    if "\r" in text and "\r\n" not in text:
        text = text.replace("\r", "\n")
    fields: dict[str, str] = {}
    lower_names = _LOWER_NAMES
    for raw_name, value in _FIELD_ASCII.findall(text):
        name = lower_names.get(raw_name)
        if name is None:
            if not _NAME.fullmatch(raw_name):
                continue  # white space beyond ASCII in the name: not a field to _FIELD
            name = raw_name.lower()
        if name not in fields:
            if "\n" in value:
                value = _FOLDING.sub(" ", value)
            fields[name] = value.strip()
    if "=?" in text:
        for name, value in fields.items():
            if "=?" in value:
                if name in _ADDRESS_FIELDS:
                    fields[name] = _decoded_address_field(value, problems)
                else:
                    fields[name] = decode_encoded_words(value, problems)
    get = fields.get

    raw_id = get("message-id")
    message_id = ""
    if raw_id:
        match = _MSG_ID.search(raw_id)
        message_id = (match.group(1) if match else raw_id.strip()).strip().lower()
    if not message_id:
        problems.append("no-message-id")
    from_value = get("from")
    if from_value is None:
        from_addr = from_name = ""
    else:
        from_pairs = _addresses(from_value)[0]
        if from_pairs:
            from_name, from_addr = from_pairs[0]
        else:
            from_addr = from_name = ""
            problems.append("from-unparseable")
    date_value = get("date")
    date_header = date_raw = None
    if not date_value:
        problems.append("no-date")
    else:
        date_header = parse_date_header(date_value)
        if date_header is None:
            problems.append("date-unparseable")
            date_raw = date_value[:500]
    reply = get("in-reply-to")
    in_reply_to = message_ids(reply) if reply else ()
    references = get("references")
    to_value, cc_value, reply_to_value = get("to"), get("cc"), get("reply-to")
    return IndexedMessage(
        uid,
        flags,
        internal_date,
        size,
        modseq,
        message_id,
        in_reply_to[0] if in_reply_to else "",
        message_ids(references) if references else (),
        get("thread-index", ""),
        get("thread-topic", ""),
        get("subject", ""),
        from_addr,
        from_name,
        _addresses(to_value)[1] if to_value else (),
        _addresses(cc_value)[1] if cc_value else (),
        _addresses(reply_to_value)[1] if reply_to_value else (),
        date_header,
        date_raw,
        {name: fields[name] for name in EXTRA_HEADERS if name in fields},
        tuple(problems),
    )


# -- FETCH responses ----------------------------------------------------------------------
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_FETCH_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FETCH_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
# Dovecot's (and most servers') order for the items we ask for, matched in one pass.
_USUAL_ORDER = re.compile(
    rb'\(UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)" '
    rb"RFC822\.SIZE (\d+)(?: MODSEQ \((\d+)\))? "
)
# The same for the identity items (no INTERNALDATE: its group matches empty).
_IDENTITY_ORDER = re.compile(
    rb"\(UID (\d+) FLAGS \(([^)]*)\) ()RFC822\.SIZE (\d+)(?: MODSEQ \((\d+)\))? "
)
_HEADER_ITEM = re.compile(rb"\bBODY\[HEADER\.FIELDS")
_FLAG_TUPLES: dict[bytes, tuple[str, ...]] = {}


def split_flags(raw: bytes) -> tuple[str, ...]:
    """The flags of a FETCH ``FLAGS (…)`` item, without ``\\Recent``."""
    # \Recent is per-session (RFC 3501 §2.3.2): storing it would look like a change every sync.
    flags = _FLAG_TUPLES.get(raw)
    if flags is None:
        flags = tuple(f for f in raw.decode("utf-8", "replace").split() if f != "\\Recent")
        if len(_FLAG_TUPLES) < 4096:  # a mailbox has few distinct flag sets
            _FLAG_TUPLES[raw] = flags
    return flags


_Built = TypeVar("_Built")
_Builder = Callable[[int, tuple[str, ...], datetime | None, int, int | None, bytes], _Built]

# One plain ``Message-ID: <id>`` line and nothing that needs decoding: the id as the
# general path (``build_from_fetch``) would find it, without the rest of its work.
_PLAIN_MESSAGE_ID = re.compile(rb"(?i:message-id):[ \t]*<([!-;=?-~]+)>[ \t]*\r?\n(?:\r?\n)?")


def identity_from_fetch(
    uid: int,
    flags: tuple[str, ...],
    internal_date: datetime | None,
    size: int,
    modseq: int | None,
    header_block: bytes,
) -> MessageIdentity:
    """``MessageIdentity`` from the identity FETCH items; the Message-ID is exactly what
    ``build_from_fetch`` makes of the same header block (a property test checks this)."""
    plain = _PLAIN_MESSAGE_ID.fullmatch(header_block)
    if plain is not None and b"=?" not in header_block:
        message_id = plain.group(1).decode("ascii").lower()
    else:
        message_id = build_from_fetch(
            uid, flags, internal_date, size, modseq, header_block
        ).message_id
    return MessageIdentity(uid, message_id, size, flags, modseq)


def parse_identity_fetch(data: list[Any]) -> list[MessageIdentity]:
    """The identities in imaplib's data for one ``UID FETCH`` of the identity items."""
    return parse_fetch(data, identity_from_fetch, _IDENTITY_ORDER)


def parse_index_fetch(data: list[Any]) -> list[IndexedMessage]:
    """The messages in imaplib's data for one ``UID FETCH`` of the index items."""
    return parse_fetch(data, build_from_fetch)


def parse_fetch(
    data: list[Any], build: _Builder[_Built], order: re.Pattern[bytes] = _USUAL_ORDER
) -> list[_Built]:
    """What ``build`` makes of each message in imaplib's data for one ``UID FETCH``.

    The data are ``(prefix, literal)`` tuples, each followed by the rest of its line.
    Untagged FETCH responses that carry no header item (unsolicited flag updates) are
    skipped; flag changes are picked up by the CONDSTORE or FLAGS pass. A plain
    function of picklable data, so a worker process can parse what the connection's
    owner fetched (``ImapMailServer.fetch_index_raw``). ``order`` matches the items in
    the order servers usually send them, in one pass (groups: UID, flags, INTERNALDATE,
    size, MODSEQ); any other order is read one item at a time.
    """
    usual_order = order.search
    messages: list[_Built] = []
    append = messages.append
    index, count = 0, len(data)
    while index < count:
        item = data[index]
        index += 1
        if isinstance(item, tuple):
            meta, header_block = item
            usual = usual_order(meta)
            if index < count and isinstance(data[index], bytes):
                if usual is None:  # an item after the literal, or an unusual order
                    meta += data[index]
                    usual = usual_order(meta)
                index += 1
        elif isinstance(item, bytes) and _HEADER_ITEM.search(item):
            meta, header_block = item, b""  # an empty header subset sent as ""
            usual = usual_order(meta)
        else:
            continue
        if usual is not None:
            uid_text, flags_raw, date_raw, size_text, modseq_text = usual.groups()
        else:
            # Any other attribute order (RFC 3501 allows it): one search per attribute.
            uid_match = _FETCH_UID.search(meta)
            if uid_match is None:
                continue
            flags_match = _FETCH_FLAGS.search(meta)
            date_match = _FETCH_INTERNALDATE.search(meta)
            size_match = _FETCH_SIZE.search(meta)
            modseq_match = _FETCH_MODSEQ.search(meta)
            uid_text = uid_match.group(1)
            flags_raw = flags_match.group(1) if flags_match else b""
            date_raw = date_match.group(1) if date_match else None
            size_text = size_match.group(1) if size_match else b"0"
            modseq_text = modseq_match.group(1) if modseq_match else None
        append(
            build(
                int(uid_text),
                split_flags(flags_raw),
                parse_internaldate(date_raw) if date_raw else None,
                int(size_text),
                int(modseq_text) if modseq_text else None,
                header_block,
            )
        )
    return messages
