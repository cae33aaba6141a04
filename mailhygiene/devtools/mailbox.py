"""Synthetic mailboxes for a ThrowawayDovecot: single messages, a PROMIX-like demo, bulk.

Messages are written straight into Maildir++ (``cur/<ts>.M<n>P<pid>Q<n>.<host>,S=,W=:2,<flags>``,
mtime = INTERNALDATE, owned by the dovecot user), after which Dovecot's index files are
dropped so it rescans. ``append_messages`` is the IMAP APPEND path (stdlib ``imaplib``).

Both generators are deterministic for a seed and a ``now``; only file names differ
between runs.
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import imaplib
import os
import quopri
import random
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from mailhygiene.devtools.dovecot import DEFAULT_USER, ThrowawayDovecot, imap_utf7_encode

__all__ = [
    "MALFORMED_KINDS",
    "BulkSummary",
    "ComplaintCase",
    "FolderWriter",
    "GeneratedMessage",
    "MailboxSummary",
    "append_messages",
    "deliver",
    "encode_words",
    "format_address",
    "generate_bulk",
    "generate_demo_mailbox",
    "message_bytes",
    "outlook_thread_index",
]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SYSTEM_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}
MAX_MAILDIR_KEYWORDS = 26
_HOST = "mailhygiene"
_FILETIME_EPOCH_OFFSET_S = 11_644_473_600
_Q_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_ASCII_ATOM_RE = re.compile(r"^[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]*$")


# =================================================================== building messages


def encode_words(text: str, *, charset: str = "utf-8", encoding: str = "q") -> str:
    """``text`` as RFC 2047 encoded-words (``=?utf-8?q?...?=``); ASCII text is returned as is.

    Falls back to UTF-8 when ``charset`` cannot encode ``text``.
    """
    if text.isascii():
        return text
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    b_encoding = encoding.lower() == "b"
    budget = 75 - len(f"=?{charset}?{encoding}??=")
    words: list[str] = []
    chunk: list[str] = []
    used = 0  # b: raw bytes in chunk; q: encoded characters in chunk
    for char in text:
        raw = char.encode(charset)
        step = len(raw) if b_encoding else sum(1 if b in _Q_SAFE or b == 0x20 else 3 for b in raw)
        total = used + step
        cost = 4 * -(-total // 3) if b_encoding else total
        if cost > budget and chunk:
            words.append(_encode_word("".join(chunk), charset, encoding))
            chunk, total = [], step
        chunk.append(char)
        used = total
    if chunk:
        words.append(_encode_word("".join(chunk), charset, encoding))
    return " ".join(words)


def _encode_word(text: str, charset: str, encoding: str) -> str:
    raw = text.encode(charset)
    if encoding.lower() == "b":
        payload = base64.b64encode(raw).decode("ascii")
    else:
        payload = "".join(
            "_" if byte == 0x20 else chr(byte) if byte in _Q_SAFE else f"={byte:02X}"
            for byte in raw
        )
    return f"=?{charset}?{encoding}?{payload}?="


def format_address(name: str, address: str, *, charset: str = "utf-8", encoding: str = "q") -> str:
    """A From/To value: ``Name <addr>``, quoting or RFC 2047-encoding the name as needed."""
    if not name:
        return address
    if not name.isascii():
        return f"{encode_words(name, charset=charset, encoding=encoding)} <{address}>"
    if _ASCII_ATOM_RE.match(name):
        return f"{name} <{address}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def outlook_thread_index(root_time: datetime, guid: bytes, replies: Sequence[datetime] = ()) -> str:
    """An Outlook ``Thread-Index``: 22-byte header (6 bytes FILETIME + GUID), 5 bytes per reply."""
    if len(guid) != 16:
        raise ValueError("the GUID must be 16 bytes")
    root_ft = _filetime(root_time)
    raw = bytearray(root_ft.to_bytes(8, "big")[:6] + guid)
    header_ft = int.from_bytes(raw[:6] + b"\0\0", "big")
    for seq, reply_time in enumerate(replies):
        delta = max(0, _filetime(reply_time) - header_ft)
        if delta < 1 << 49:
            code, bits = 0, (delta >> 18) & 0x7FFF_FFFF
        else:
            code, bits = 1, (delta >> 23) & 0x7FFF_FFFF
        noise = guid[seq % 16] & 0x0F
        block = (code << 39) | (bits << 8) | (noise << 4) | (seq & 0x0F)
        raw += block.to_bytes(5, "big")
    return base64.b64encode(bytes(raw)).decode("ascii")


def _filetime(moment: datetime) -> int:
    return int((moment.timestamp() + _FILETIME_EPOCH_OFFSET_S) * 10_000_000)


def message_bytes(
    *,
    subject: str,
    from_: str,
    to: str = DEFAULT_USER,
    date: datetime | str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    body: str = "Hej!\n",
    charset: str = "utf-8",
    omit_headers: Iterable[str] = (),
) -> bytes:
    """One RFC 5322 message (CRLF line ends) with a text/plain body.

    ``subject`` and display names in ``from_``/``to`` (``"Åsa Öberg <asa@x.example>"``) are
    RFC 2047-encoded when not ASCII. ``date`` defaults to now; ``message_id`` to a random
    ``<…@promix.example>``; ``omit_headers`` drops standard headers (e.g. ``"Message-ID"``,
    ``"Date"``) to build malformed messages. ``headers`` are added verbatim, encoded as
    UTF-8 with surrogateescape (``"\udce5"`` gives the raw Latin-1 byte 0xE5).
    """
    omitted = {name.lower() for name in omit_headers}
    when = datetime.now(UTC) if date is None else date
    fields: list[tuple[str, str]] = [
        ("Date", when if isinstance(when, str) else email.utils.format_datetime(when)),
        ("From", _address_header(from_)),
        ("To", _address_header(to)),
        ("Subject", encode_words(subject)),
        ("Message-ID", message_id or f"<{secrets.token_hex(12)}@promix.example>"),
    ]
    if in_reply_to:
        fields.append(("In-Reply-To", in_reply_to))
    if references:
        fields.append(("References", " ".join(references)))
    fields.append(("MIME-Version", "1.0"))
    fields.append(("Content-Type", f"text/plain; charset={charset}"))
    fields.append(("Content-Transfer-Encoding", "8bit"))
    fields.extend(headers)
    head = "".join(f"{name}: {value}\r\n" for name, value in fields if name.lower() not in omitted)
    text = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + text.encode(charset)


def _address_header(value: str) -> str:
    """Encode each address of a list (``"a@x, Bo <b@y>"``); unparseable text stays as is."""
    pairs = email.utils.getaddresses([value])
    if not pairs or not all(address for _, address in pairs):
        return value
    return ", ".join(format_address(name, address) for name, address in pairs)


# =================================================================== writing Maildir


class FolderWriter:
    """Writes messages straight into one Maildir++ folder of a ThrowawayDovecot user.

    Creates the folder if needed, keeps the folder's ``dovecot-keywords`` mapping
    (keyword ``n`` ↔ file name letter ``chr(ord('a') + n)``) and gives every file to the
    dovecot user. Call ``dovecot.rescan(user)`` after writing while Dovecot runs.
    """

    def __init__(self, dovecot: ThrowawayDovecot, user: str, folder: str) -> None:
        self.directory = dovecot.create_folder(user, folder)
        self._cur = str(self.directory / "cur")
        self._uid = dovecot.mail_uid
        self._gid = dovecot.mail_gid
        self._prefix = f"P{os.getpid()}{secrets.token_hex(3)}Q"
        self._serial = 0
        self._keywords = self._read_keywords()

    def write(
        self,
        raw: bytes,
        internal_date: datetime | float,
        *,
        flags: Iterable[str] = (),
        keywords: Iterable[str] = (),
    ) -> Path:
        """Store ``raw`` (CRLF or LF) with these flags/keywords; returns the file's path."""
        data = raw.replace(b"\r\n", b"\n")
        stamp = internal_date.timestamp() if isinstance(internal_date, datetime) else internal_date
        letters = self.flag_letters(flags, keywords)
        self._serial += 1
        seconds = int(stamp)
        vsize = len(data) + data.count(b"\n")
        name = (
            f"{seconds}.M{self._serial % 1_000_000}{self._prefix}{self._serial}.{_HOST}"
            f",S={len(data)},W={vsize}:2,{letters}"
        )
        path = os.path.join(self._cur, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
            os.fchown(fd, self._uid, self._gid)
            os.utime(fd, (stamp, stamp))
        finally:
            os.close(fd)
        return Path(path)

    def flag_letters(self, flags: Iterable[str], keywords: Iterable[str] = ()) -> str:
        """The Maildir info letters for system flags and keywords, in the required order."""
        letters: set[str] = set()
        for flag in flags:
            letter = SYSTEM_FLAG_LETTERS.get(flag.lower())
            if letter is None:
                if flag.startswith("\\"):
                    raise ValueError(f"{flag!r} cannot be stored in Maildir")
                letters.add(self._keyword_letter(flag))
            else:
                letters.add(letter)
        letters.update(self._keyword_letter(keyword) for keyword in keywords)
        return "".join(sorted(letters))

    def _keyword_letter(self, keyword: str) -> str:
        if not keyword or keyword.startswith("\\") or any(c in keyword for c in ' ()"{%*]\r\n'):
            raise ValueError(f"{keyword!r} is not an IMAP keyword")
        for index, name in self._keywords.items():
            if name.lower() == keyword.lower():
                return chr(ord("a") + index)
        free = [i for i in range(MAX_MAILDIR_KEYWORDS) if i not in self._keywords]
        if not free:
            raise ValueError(f"Maildir holds at most {MAX_MAILDIR_KEYWORDS} keywords per folder")
        self._keywords[free[0]] = keyword
        self._write_keywords()
        return chr(ord("a") + free[0])

    def _read_keywords(self) -> dict[int, str]:
        mapping: dict[int, str] = {}
        try:
            text = (self.directory / "dovecot-keywords").read_text(encoding="utf-8")
        except FileNotFoundError:
            return mapping
        for line in text.splitlines():
            index, _, name = line.partition(" ")
            if index.isdigit() and name and int(index) < MAX_MAILDIR_KEYWORDS:
                mapping[int(index)] = name
        return mapping

    def _write_keywords(self) -> None:
        target = self.directory / "dovecot-keywords"
        tmp = self.directory / f".dovecot-keywords.{os.getpid()}.tmp"
        lines = "".join(f"{i} {name}\n" for i, name in sorted(self._keywords.items()))
        tmp.write_text(lines, encoding="utf-8")
        os.chown(tmp, self._uid, self._gid)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)


def deliver(
    dovecot: ThrowawayDovecot,
    user: str,
    folder: str,
    raw: bytes,
    *,
    internal_date: datetime | None = None,
    flags: Iterable[str] = (),
    keywords: Iterable[str] = (),
    rescan: bool = True,
) -> Path:
    """Write one message into ``folder`` directly (default INTERNALDATE: now)."""
    writer = FolderWriter(dovecot, user, folder)
    path = writer.write(
        raw,
        datetime.now(UTC) if internal_date is None else internal_date,
        flags=flags,
        keywords=keywords,
    )
    if rescan:
        dovecot.rescan(user)
    return path


def append_messages(
    host: str,
    port: int,
    user: str,
    password: str,
    folder: str,
    messages: Iterable[tuple[bytes, Sequence[str], datetime | None]],
    *,
    create: bool = True,
) -> list[int]:
    """APPEND ``(raw, flags_and_keywords, internal_date)`` messages with imaplib; returns UIDs.

    Creates ``folder`` first unless ``create`` is false. Dovecot handles keywords itself.
    """
    mailbox = _quote_mailbox(folder)
    uids: list[int] = []
    conn = imaplib.IMAP4(host, port, timeout=30)
    try:
        conn.login(user, password)
        if create and folder.upper() != "INBOX":
            status, _ = conn.create(mailbox)
            if status != "OK" and imap_utf7_encode(folder) not in _list_folders(conn):
                raise RuntimeError(f"cannot create folder {folder!r}")
        for raw, flags, internal_date in messages:
            flag_list = f"({' '.join(flags)})" if flags else None
            when = imaplib.Time2Internaldate(internal_date) if internal_date else None
            status, data = conn.append(mailbox, flag_list, when, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND to {folder!r} failed: {data!r}")
            match = _APPENDUID_RE.search(b" ".join(d for d in data if isinstance(d, bytes)))
            uids.append(int(match.group(1)) if match else 0)
        conn.logout()
    finally:
        if conn.state != "LOGOUT":
            conn.shutdown()
    return uids


def _quote_mailbox(folder: str) -> str:
    encoded = imap_utf7_encode(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list_folders(conn: imaplib.IMAP4) -> set[str]:
    _, data = conn.list()
    names: set[str] = set()
    for line in data:
        if isinstance(line, bytes):
            names.add(line.rsplit(b' "/" ', 1)[-1].strip(b'"').decode("ascii", "replace"))
    return names


# =================================================================== demo mailbox


@dataclass(frozen=True)
class GeneratedMessage:
    """One message the demo generator wrote."""

    folder: str
    message_id: str | None
    category: str
    subject: str
    internal_date: datetime
    flags: tuple[str, ...]
    defect: str | None = None


@dataclass(frozen=True)
class ComplaintCase:
    """A reklamation thread: its case reference and every message in it, in order."""

    ref: str
    message_ids: tuple[str, ...]
    folders: tuple[str, ...]
    linked_by: str  # "references" (In-Reply-To/References) or "thread-index" (Outlook)
    ref_message_ids: tuple[str, ...]  # the messages whose Subject carries the ref
    opened: datetime
    last_activity: datetime


@dataclass(frozen=True)
class MailboxSummary:
    """What generate_demo_mailbox wrote, for tests to assert against."""

    user: str
    now: datetime
    folders: tuple[str, ...]
    folder_counts: dict[str, int]
    category_counts: dict[str, int]
    cases: tuple[ComplaintCase, ...]
    malformed: dict[str, int]
    messages: tuple[GeneratedMessage, ...]

    @property
    def total(self) -> int:
        return len(self.messages)

    def message_ids(self, category: str) -> list[str]:
        """Message-IDs of the messages of one category (messages without one are skipped)."""
        return [m.message_id for m in self.messages if m.category == category and m.message_id]


MALFORMED_KINDS = (
    "no_message_id",
    "duplicate_message_id",
    "unparseable_date",
    "missing_date",
    "raw_8bit_subject",
    "header_without_colon",
    "very_long_header",
)

_FIRST_NAMES = (
    "Åsa",
    "Björn",
    "Märta",
    "Örjan",
    "Elin",
    "Göran",
    "Karin",
    "Lars",
    "Anna",
    "Jönsson",
    "Sofia",
    "Per",
    "Ingrid",
    "Mikael",
    "Linnéa",
    "Håkan",
    "Ulla",
    "Erik",
    "Maja",
    "Öystein",
)
_LAST_NAMES = (
    "Öberg",
    "Lindqvist",
    "Ström",
    "Åkesson",
    "Nyström",
    "Persson",
    "Sjögren",
    "Ek",
    "Berg",
    "Hägglund",
    "Johansson",
    "Wästberg",
    "Falk",
    "Lövgren",
    "Nilsson",
    "Karlsson",
)
_CUSTOMER_DOMAINS = ("mail.example", "kund.example", "foretag.example", "bredband.example")
_PRODUCTS = (
    "kaffebryggare",
    "vattenkokare",
    "hörlurar",
    "skrivbordslampa",
    "ryggsäck",
    "termos",
    "mixer",
    "stekpanna",
    "väggklocka",
    "cykelhjälm",
)
_CASE_TOPICS = (
    "trasig leverans",
    "fel storlek",
    "saknad vara",
    "skadad förpackning",
    "fel färg",
    "produkten slutade fungera",
    "repig glasskiva",
    "läckande termos",
)
_QUESTIONS = (
    "Fråga om leverans av order {order}",
    "Leveranstid för {product}?",
    "Ändra adress på min beställning {order}",
    "Beställning {order}",
    "Produktfråga: {product}",
    "Hej! Har ni {product} i lager?",
    "Retur av {product}, order {order}",
    "Order #{order} – bekräftelse saknas",
    "Kan jag betala med faktura?",
)
_SUPPLIERS = (
    ("Leverantören AB", "faktura@leverantor.example"),
    ("Grossisten i Norr", "ekonomi@grossist.example"),
    ("Frakt & Logistik", "invoice@frakt.example"),
    ("Kortinlösen", "kvitto@kortinlosen.example"),
)
_BOOKKEEPING_SUBJECTS = (
    "Faktura {n}",
    "Kvitto",
    "Kvitto för betalning {n}",
    "Betalningspåminnelse",
    "Betalningspåminnelse faktura {n}",
    "Kreditnota {n}",
    "Faktura {n} från {supplier}",
)
_NEWSLETTERS = (
    ("Grossisten Nyhetsbrev", "nyhetsbrev@grossist.example", "nyheter.grossist.example"),
    ("Branschförbundet", "info@bransch.example", "medlemsbrev.bransch.example"),
    ("Fraktbolaget", "news@frakt.example", "kampanj.frakt.example"),
)
_NEWSLETTER_SUBJECTS = (
    "Veckans erbjudanden v.{week}",
    "Nyheter i sortimentet",
    "Höstkampanj – upp till 30 % rabatt",
    "Så påverkas du av nya momsreglerna",
    "Inbjudan: branschdag {year}",
)
_DECOY_SUBJECTS = (
    ("newsletter", "Reklamationsrätt – så funkar det"),
    ("customer", "Hur gör jag en reklamation?"),
    ("customer", "Reklamationstid på {product}?"),
)
_STAFF = ("PROMIX Kundtjänst", DEFAULT_USER)
_BODY_LINES = (
    "Tack för snabb hantering!",
    "Jag beställde för två veckor sedan men har inte fått något besked.",
    "Paketet kom fram i dag men kartongen var blöt och trasig.",
    "Kan ni återkomma så snart som möjligt?",
    "Bifogar en bild på skadan.",
    "Ordernumret står i bekräftelsen jag fick från er.",
    "Vi har tyvärr fått fel storlek levererad.",
    "Hälsningar från Göteborg",
)
_FAKE_PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)
_HeadItem = tuple[str, str] | bytes  # a header field, or a raw (possibly broken) header line


class _Demo:
    """State of one generate_demo_mailbox run."""

    def __init__(
        self, dovecot: ThrowawayDovecot, user: str, rng: random.Random, now: datetime
    ) -> None:
        self.rng = rng
        self.now = now
        local_year = now.astimezone(STOCKHOLM).year
        self.archive_years = (local_year - 1, local_year)
        self.folders = (
            "INBOX",
            "Sent",
            "Archive",
            *(f"Archive/{year}" for year in self.archive_years),
        )
        self.writers = {folder: FolderWriter(dovecot, user, folder) for folder in self.folders}
        self.messages: list[GeneratedMessage] = []
        self.cases: list[ComplaintCase] = []
        self.malformed = dict.fromkeys(MALFORMED_KINDS, 0)
        self.case_seq: dict[int, int] = {}
        self.customer_ids: list[str] = []

    # ------------------------------------------------------------ primitives

    def start_time(self) -> datetime:
        return self.now - timedelta(seconds=self.rng.uniform(3600, 1095 * 86400))

    def later(self, moment: datetime, low_h: float, high_h: float) -> datetime:
        return moment + timedelta(hours=self.rng.uniform(low_h, high_h))

    def msgid(self, domain: str) -> str:
        return f"<{self.rng.getrandbits(64):016x}.{self.rng.getrandbits(24):06x}@{domain}>"

    def customer(self) -> tuple[str, str]:
        first = self.rng.choice(_FIRST_NAMES)
        last = self.rng.choice(_LAST_NAMES)
        local = _ascii_fold(f"{first}.{last}").lower()
        return f"{first} {last}", f"{local}@{self.rng.choice(_CUSTOMER_DOMAINS)}"

    def address(self, name: str, addr: str) -> str:
        roll = self.rng.random()
        if roll < 0.5:
            return format_address(name, addr)
        if roll < 0.8:
            return format_address(name, addr, charset="iso-8859-1", encoding="b")
        return format_address(name, addr, encoding="b")

    def encoded_subject(self, text: str) -> str:
        roll = self.rng.random()
        if text.isascii() or roll < 0.55:
            return encode_words(text)
        if roll < 0.8:
            return encode_words(text, charset="iso-8859-1", encoding="b")
        return encode_words(text, charset="iso-8859-1", encoding="q")

    def inbound_folder(self, moment: datetime) -> str:
        local = moment.astimezone(STOCKHOLM)
        if local.year in self.archive_years and (self.now - moment).days > 180:
            return f"Archive/{local.year}"
        return "INBOX"

    def inbound_flags(self, moment: datetime, *, answered: bool = False) -> tuple[str, ...]:
        flags: list[str] = []
        if (self.now - moment).days > 14 or self.rng.random() < 0.5:
            flags.append("\\Seen")
        if answered:
            flags.append("\\Answered")
        if self.rng.random() < 0.02:
            flags.append("\\Flagged")
        return tuple(flags)

    def head(
        self,
        *,
        sent: datetime,
        from_: str,
        to: str,
        subject: str,
        message_id: str | None,
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
    ) -> list[_HeadItem]:
        items: list[_HeadItem] = [
            ("Return-Path", f"<{email.utils.parseaddr(from_)[1]}>"),
            ("Date", email.utils.format_datetime(sent.astimezone(STOCKHOLM))),
            ("From", from_),
            ("To", to),
            ("Subject", self.encoded_subject(subject)),
        ]
        if message_id is not None:
            items.append(("Message-ID", message_id))
        if in_reply_to:
            items.append(("In-Reply-To", in_reply_to))
        if references:
            items.append(("References", " ".join(references)))
        items.append(("MIME-Version", "1.0"))
        return items

    def text(self, items: list[_HeadItem], text: str, *, latin1: bool = False) -> bytes:
        """Add text/plain headers to ``items``; returns the body."""
        if latin1:
            items.append(("Content-Type", "text/plain; charset=iso-8859-1"))
            items.append(("Content-Transfer-Encoding", "quoted-printable"))
            return quopri.encodestring(text.encode("iso-8859-1"))
        items.append(("Content-Type", "text/plain; charset=utf-8"))
        items.append(("Content-Transfer-Encoding", "8bit"))
        return text.encode("utf-8")

    def put(
        self,
        folder: str,
        items: Sequence[_HeadItem],
        body: bytes,
        sent: datetime,
        *,
        category: str,
        subject: str,
        flags: tuple[str, ...],
        defect: str | None = None,
    ) -> datetime:
        delay = 0.0 if folder == "Sent" else self.rng.uniform(2, 600)
        internal = min(sent + timedelta(seconds=delay), self.now)
        lines = [
            item if isinstance(item, bytes) else f"{item[0]}: {item[1]}\n".encode("ascii")
            for item in items
        ]
        self.writers[folder].write(b"".join(lines) + b"\n" + body, internal, flags=flags)
        message_id = next(
            (i[1] for i in items if isinstance(i, tuple) and i[0] == "Message-ID"), None
        )
        self.messages.append(
            GeneratedMessage(folder, message_id, category, subject, internal, flags, defect)
        )
        return internal

    def case_ref(self, moment: datetime) -> str:
        year = moment.astimezone(STOCKHOLM).year
        seq = self.case_seq.get(year, self.rng.randint(1, 30)) + self.rng.randint(1, 4)
        self.case_seq[year] = seq
        return f"REK-{year}-{seq:04d}"

    # ------------------------------------------------------------ categories

    def customer_thread(self) -> None:
        rng = self.rng
        name, addr = self.customer()
        domain = addr.split("@")[1]
        order = rng.randint(10000, 99999)
        subject = rng.choice(_QUESTIONS).format(order=order, product=rng.choice(_PRODUCTS))
        sent = self.start_time()
        reply_at = self.later(sent, 1, 48)
        answered = rng.random() < 0.45 and reply_at < self.now
        first_id = self.msgid(domain)
        items = self.head(
            sent=sent,
            from_=self.address(name, addr),
            to=DEFAULT_USER,
            subject=subject,
            message_id=first_id,
        )
        body = self.text(
            items,
            f"Hej!\n\n{rng.choice(_BODY_LINES)}\nOrder: {order}\n\nMvh\n{name}\n",
            latin1=rng.random() < 0.2,
        )
        self.put(
            self.inbound_folder(sent),
            items,
            body,
            sent,
            category="customer",
            subject=subject,
            flags=self.inbound_flags(sent, answered=answered),
        )
        self.customer_ids.append(first_id)
        if not answered:
            return
        reply_id = self.msgid("promix.example")
        reply_subject = f"SV: {subject}"
        items = self.head(
            sent=reply_at,
            from_=format_address(*_STAFF),
            to=self.address(name, addr),
            subject=reply_subject,
            message_id=reply_id,
            in_reply_to=first_id,
            references=[first_id],
        )
        body = self.text(items, _STAFF_REPLY)
        self.put(
            "Sent",
            items,
            body,
            reply_at,
            category="staff-reply",
            subject=reply_subject,
            flags=("\\Seen",),
        )
        follow_at = self.later(reply_at, 2, 72)
        if rng.random() >= 0.3 or follow_at >= self.now:
            return
        follow_subject = f"SV: SV: {subject}"
        items = self.head(
            sent=follow_at,
            from_=self.address(name, addr),
            to=DEFAULT_USER,
            subject=follow_subject,
            message_id=self.msgid(domain),
            in_reply_to=reply_id,
            references=[first_id, reply_id],
        )
        body = self.text(items, f"Tack, då förstår jag!\n\n/{name}\n")
        self.put(
            self.inbound_folder(follow_at),
            items,
            body,
            follow_at,
            category="customer",
            subject=follow_subject,
            flags=self.inbound_flags(follow_at),
        )

    def bookkeeping(self) -> None:
        rng = self.rng
        supplier, addr = rng.choice(_SUPPLIERS)
        number = rng.randint(10000, 99999)
        subject = rng.choice(_BOOKKEEPING_SUBJECTS).format(n=number, supplier=supplier)
        sent = self.start_time()
        items = self.head(
            sent=sent,
            from_=self.address(supplier, addr),
            to=DEFAULT_USER,
            subject=subject,
            message_id=self.msgid(addr.split("@")[1]),
        )
        due = (sent + timedelta(days=30)).date().isoformat()
        text = (
            f"Hej!\n\nHär kommer {subject.lower()}.\nBelopp: {rng.randint(100, 90000)} kr\n"
            f"Förfallodag: {due}\n\n{supplier}\n"
        )
        if rng.random() < 0.6:
            boundary = f"=_mh{rng.getrandbits(48):012x}"
            name = (
                "Betalningspåminnelse.pdf" if "påminnelse" in subject else f"Faktura_{number}.pdf"
            )
            disposition = (
                f'attachment; filename="{name}"'
                if name.isascii()
                else "attachment; filename*=utf-8''" + urllib.parse.quote(name)
            )
            pdf = base64.encodebytes(_FAKE_PDF).decode("ascii")
            body = (
                f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                f"Content-Transfer-Encoding: 8bit\n\n{text}\n--{boundary}\n"
                f"Content-Type: application/pdf\nContent-Disposition: {disposition}\n"
                f"Content-Transfer-Encoding: base64\n\n{pdf}\n--{boundary}--\n"
            ).encode()
            items.append(("Content-Type", f'multipart/mixed; boundary="{boundary}"'))
        else:
            body = self.text(items, text, latin1=rng.random() < 0.3)
        self.put(
            self.inbound_folder(sent),
            items,
            body,
            sent,
            category="bookkeeping",
            subject=subject,
            flags=self.inbound_flags(sent),
        )

    def newsletter(self, subject: str | None = None, category: str = "newsletter") -> None:
        rng = self.rng
        name, addr, list_id = rng.choice(_NEWSLETTERS)
        sent = self.start_time()
        if subject is None:
            subject = rng.choice(_NEWSLETTER_SUBJECTS).format(
                week=sent.isocalendar().week, year=sent.year
            )
        items = self.head(
            sent=sent,
            from_=self.address(name, addr),
            to=DEFAULT_USER,
            subject=subject,
            message_id=self.msgid(list_id),
        )
        items += [
            ("List-Id", f"{_ascii_fold(name)} <{list_id}>"),
            ("List-Unsubscribe", f"<mailto:unsubscribe@{list_id}>"),
            ("Precedence", "bulk"),
        ]
        body = self.text(items, "\n".join([subject, "", *rng.sample(_BODY_LINES, 3), ""]))
        self.put(
            self.inbound_folder(sent),
            items,
            body,
            sent,
            category=category,
            subject=subject,
            flags=self.inbound_flags(sent),
        )

    def decoy(self) -> None:
        kind, template = self.rng.choice(_DECOY_SUBJECTS)
        subject = template.format(product=self.rng.choice(_PRODUCTS))
        if kind == "newsletter":
            self.newsletter(subject, category="decoy")
            return
        name, addr = self.customer()
        sent = self.start_time()
        items = self.head(
            sent=sent,
            from_=self.address(name, addr),
            to=DEFAULT_USER,
            subject=subject,
            message_id=self.msgid(addr.split("@")[1]),
        )
        body = self.text(items, f"Hej, hur går det till om något är fel på en vara?\n/{name}\n")
        self.put(
            self.inbound_folder(sent),
            items,
            body,
            sent,
            category="decoy",
            subject=subject,
            flags=self.inbound_flags(sent),
        )

    def complaint_case(self) -> None:
        rng = self.rng
        name, addr = self.customer()
        domain = addr.split("@")[1]
        topic = rng.choice(_CASE_TOPICS)
        sent = self.start_time()
        ref = self.case_ref(sent)
        template = rng.choice(("Reklamation {ref}: {topic}", "Reklamation: {ref} – {topic}"))
        case_subject = template.format(ref=ref, topic=topic)
        customer_first = rng.random() < 0.7  # else the staff's first reply assigns the ref
        steps = [
            ("customer", case_subject if customer_first else topic.capitalize()),
            ("staff", f"SV: {case_subject}"),
            ("customer", f"SV: {topic}"),
            ("staff", f"SV: {topic}"),
            ("customer", f"SV: SV: {topic}"),
        ][: rng.randint(3, 5)]
        ids: list[str] = []
        folders: list[str] = []
        with_ref: list[str] = []
        internals: list[datetime] = []
        moment = sent
        for index, (who, subject) in enumerate(steps):
            if index:
                moment = self.later(moment, 2, 120)
                if moment >= self.now:
                    break
            staff = who == "staff"
            message_id = self.msgid("promix.example" if staff else domain)
            items = self.head(
                sent=moment,
                from_=format_address(*_STAFF) if staff else self.address(name, addr),
                to=self.address(name, addr) if staff else DEFAULT_USER,
                subject=subject,
                message_id=message_id,
                in_reply_to=ids[-1] if ids else None,
                references=ids[-10:],
            )
            signature = "PROMIX Kundtjänst" if staff else name
            body = self.text(items, f"Ärende: {topic}\n{rng.choice(_BODY_LINES)}\n/{signature}\n")
            folder = "Sent" if staff else self.inbound_folder(moment)
            flags = (
                ("\\Seen",)
                if staff
                else self.inbound_flags(moment, answered=index + 1 < len(steps))
            )
            internals.append(
                self.put(
                    folder, items, body, moment, category="complaint", subject=subject, flags=flags
                )
            )
            ids.append(message_id)
            folders.append(folder)
            if ref in subject:
                with_ref.append(message_id)
        if not with_ref:
            return  # the staff reply that names the case was never sent; not a case yet
        self.cases.append(
            ComplaintCase(
                ref,
                tuple(ids),
                tuple(folders),
                "references",
                tuple(with_ref),
                internals[0],
                internals[-1],
            )
        )

    def outlook_thread(self, *, complaint: bool) -> None:
        rng = self.rng
        name, addr = self.customer()
        topic = rng.choice(_CASE_TOPICS if complaint else _PRODUCTS)
        sent = self.start_time()
        ref = self.case_ref(sent) if complaint else ""
        root_subject = f"Reklamation {ref}: {topic}" if complaint else f"Fråga om {topic}"
        guid = rng.getrandbits(128).to_bytes(16, "big")
        times = [sent]
        for _ in range(rng.randint(1, 3)):
            nxt = self.later(times[-1], 1, 96)
            if nxt >= self.now:
                break
            times.append(nxt)
        category = "outlook-complaint" if complaint else "outlook"
        ids: list[str] = []
        folders: list[str] = []
        internals: list[datetime] = []
        for index, moment in enumerate(times):
            staff = index % 2 == 1
            subject = root_subject if index == 0 else f"SV: {topic}"
            prefix = rng.choice(("AM0PR07", "DB8PR02", "HE1PR05"))
            message_id = (
                f"<{prefix}MB{rng.randint(1000, 9999)}{rng.getrandbits(40):010X}"
                f"@{'promix' if staff else 'eurprd07.outlook'}.example>"
            )
            items = self.head(
                sent=moment,
                from_=format_address(*_STAFF) if staff else self.address(name, addr),
                to=self.address(name, addr) if staff else DEFAULT_USER,
                subject=subject,
                message_id=message_id,
            )
            items += [
                ("Thread-Topic", encode_words(root_subject)),
                ("Thread-Index", outlook_thread_index(sent, guid, times[1 : index + 1])),
                ("Accept-Language", "sv-SE, en-US"),
                ("Content-Language", "sv-SE"),
                ("X-MS-Has-Attach", ""),
                ("X-MS-TNEF-Correlator", ""),
            ]
            body = self.text(items, f"{rng.choice(_BODY_LINES)}\n/{name}\n")
            folder = "Sent" if staff else self.inbound_folder(moment)
            flags = ("\\Seen",) if staff else self.inbound_flags(moment)
            internals.append(
                self.put(
                    folder, items, body, moment, category=category, subject=subject, flags=flags
                )
            )
            ids.append(message_id)
            folders.append(folder)
        if complaint:
            self.cases.append(
                ComplaintCase(
                    ref,
                    tuple(ids),
                    tuple(folders),
                    "thread-index",
                    (ids[0],),
                    internals[0],
                    internals[-1],
                )
            )

    def malformed_message(self, kind: str) -> None:
        rng = self.rng
        name, addr = self.customer()
        sent = self.start_time()
        subject = f"Fråga om order {rng.randint(10000, 99999)}"
        message_id: str | None = self.msgid(addr.split("@")[1])
        if kind == "no_message_id":
            message_id = None
        elif kind == "duplicate_message_id":
            message_id = rng.choice(self.customer_ids)
        items = self.head(
            sent=sent,
            from_=self.address(name, addr),
            to=DEFAULT_USER,
            subject=subject,
            message_id=message_id,
        )
        if kind == "unparseable_date":
            items[1] = ("Date", "tisdag kl 14.30")
        elif kind == "missing_date":
            del items[1]
        elif kind == "raw_8bit_subject":
            items[4] = b"Subject: " + subject.encode("iso-8859-1") + b"\n"
        elif kind == "header_without_colon":
            items.insert(4, b"X-Broken-Mailer this line has no colon\n")
        elif kind == "very_long_header":
            noise = "".join(rng.choice("0123456789abcdef") for _ in range(_LONG_HEADER_CHARS))
            items.append(("X-Tracking-Data", noise))
        body = self.text(items, f"Hej!\nMeddelande med trasigt huvud för tester.\n/{name}\n")
        self.put(
            self.inbound_folder(sent),
            items,
            body,
            sent,
            category="malformed",
            subject=subject,
            flags=self.inbound_flags(sent),
            defect=kind,
        )
        self.malformed[kind] += 1


_STAFF_REPLY = (
    "Hej!\n\nTack för ditt mejl. Vi återkommer inom kort.\n\n"
    "Med vänliga hälsningar\nPROMIX Kundtjänst\n"
)
_LONG_HEADER_CHARS = 12_000
_FOLD = str.maketrans("åäöÅÄÖéÉü", "aaoAAOeEu")


def _ascii_fold(text: str) -> str:
    return text.translate(_FOLD)


def _aware_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def generate_demo_mailbox(
    dovecot: ThrowawayDovecot,
    user: str,
    *,
    seed: int = 1,
    now: datetime | None = None,
    count: int = 3000,
    malformed_each: int = 2,
) -> MailboxSummary:
    """Write a PROMIX-like support mailbox of about ``count`` messages over ~3 years.

    Folders: INBOX, Sent, Archive, Archive/<last year>, Archive/<this year> (Stockholm time).
    Inbound mail older than 180 days from those two years sits in its Archive folder;
    older mail stays in INBOX. Categories: ``customer``, ``staff-reply``, ``bookkeeping``,
    ``newsletter``, ``complaint`` (reference-linked case threads), ``outlook`` and
    ``outlook-complaint`` (Thread-Index only), ``decoy`` (mentions reklamation without a
    case) and ``malformed`` (``malformed_each`` of every kind in MALFORMED_KINDS).
    """
    if count < 200:
        raise ValueError("count must be at least 200")
    when = _aware_now(now)
    demo = _Demo(dovecot, user, random.Random(seed), when)
    rng = demo.rng
    for _ in range(count // 85):
        demo.complaint_case()
    for index in range(count // 150):
        demo.outlook_thread(complaint=index % 2 == 0)
    for _ in range(count // 300):
        demo.decoy()
    reserved = malformed_each * len(MALFORMED_KINDS)
    while len(demo.messages) < count - reserved:
        roll = rng.random()
        if roll < 0.55:
            demo.customer_thread()
        elif roll < 0.75:
            demo.bookkeeping()
        else:
            demo.newsletter()
    for kind in MALFORMED_KINDS:
        for _ in range(malformed_each):
            demo.malformed_message(kind)
    dovecot.rescan(user)
    folder_counts = dict.fromkeys(demo.folders, 0)
    category_counts: dict[str, int] = {}
    for message in demo.messages:
        folder_counts[message.folder] += 1
        category_counts[message.category] = category_counts.get(message.category, 0) + 1
    return MailboxSummary(
        user=user,
        now=when,
        folders=demo.folders,
        folder_counts=folder_counts,
        category_counts=category_counts,
        cases=tuple(demo.cases),
        malformed=demo.malformed,
        messages=tuple(demo.messages),
    )


# =================================================================== bulk mailbox


@dataclass(frozen=True)
class BulkSummary:
    """What generate_bulk wrote, and how fast."""

    folder: str
    count: int
    bytes_written: int
    seconds: float
    older_than_365_days: int
    complaint_messages: int
    complaint_messages_older_than_365_days: int
    case_refs: tuple[str, ...] = field(default=(), repr=False)

    @property
    def rate(self) -> float:
        """Messages written per second."""
        return self.count / self.seconds if self.seconds > 0 else float("inf")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BULK_WORDS = (
    "order", "leverans", "paket", "faktura", "betalning", "kund", "produkt", "retur",
    "adress", "vecka", "tack", "hej", "fraga", "svar", "lager", "pris", "rabatt",
    "kampanj", "kvitto", "frakt", "tid", "datum", "nummer", "besked", "kontakt",
)  # fmt: skip


def _rfc5322_date(stamp: float) -> bytes:
    tm = time.gmtime(stamp)
    return (
        f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
    ).encode("ascii")


def _bulk_text(rng: random.Random, length: int) -> tuple[bytes, list[int]]:
    """ASCII text of ``length`` bytes in lines of ≤ 76 chars, and the offsets of line starts."""
    lines: list[str] = []
    total = 0
    while total < length:
        words: list[str] = []
        width = 0
        while width < 60:
            word = rng.choice(_BULK_WORDS)
            words.append(word)
            width += len(word) + 1
        line = " ".join(words).capitalize() + ".\n"
        lines.append(line)
        total += len(line)
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line))
    return "".join(lines).encode("ascii"), starts


def generate_bulk(
    dovecot: ThrowawayDovecot,
    user: str,
    folder: str,
    count: int,
    *,
    seed: int = 1,
    now: datetime | None = None,
    age_days: tuple[float, float] = (0, 1095),
    size: tuple[int, int] = (2000, 8000),
    case_rate: float = 0.002,
    rescan: bool = True,
) -> BulkSummary:
    """Write ``count`` messages of ``size`` bytes with uniform ages into ``folder``, fast.

    INTERNALDATE grows with the UID order Dovecot will assign (file names start with it).
    About 20 % are replies (In-Reply-To/References), 15 % list mail (List-Id), and
    ``case_rate`` of the messages open a complaint case ("Reklamation REK-…") that gets
    1–3 later replies whose subject drops the case ref but keeps References.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    if not 0 <= age_days[0] <= age_days[1]:
        raise ValueError("age_days must be (low, high) with 0 <= low <= high")
    if not 600 <= size[0] <= size[1]:
        raise ValueError("size must be (low, high) with 600 <= low <= high")
    started = time.perf_counter()
    when = _aware_now(now)
    rng = random.Random(seed)
    rnd = rng.random
    now_ts = when.timestamp()
    newest = now_ts - age_days[0] * 86400
    span = (age_days[1] - age_days[0]) * 86400
    stamps = sorted(newest - rnd() * span for _ in range(count))
    cutoff = now_ts - 365 * 86400

    blob, starts = _bulk_text(rng, 2 * size[1] + 4096)
    starts = [s for s in starts if s + size[1] < len(blob)]
    senders = [
        format_address(
            f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            f"kund{n}@{rng.choice(_CUSTOMER_DOMAINS)}",
        ).encode("ascii")
        for n in range(400)
    ]
    subjects = [
        encode_words(
            rng.choice(_QUESTIONS).format(
                order=rng.randint(10000, 99999), product=rng.choice(_PRODUCTS)
            )
        ).encode("ascii")
        for _ in range(300)
    ]
    lists = [
        (format_address(name, addr).encode("ascii"), f"{_ascii_fold(name)} <{lid}>".encode())
        for name, addr, lid in _NEWSLETTERS
    ]
    list_subjects = [
        encode_words(text.format(week=week, year=2024)).encode("ascii")
        for text in _NEWSLETTER_SUBJECTS
        for week in (1, 17, 33, 49)
    ]
    to_header = b"To: " + DEFAULT_USER.encode("ascii") + b"\n"
    mime = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n"
    tag = f"{seed:x}".encode("ascii")

    def mid(index: int) -> bytes:
        return b"<%d.%s@bulk.promix.example>" % (index, tag)

    followups: dict[int, tuple[str, list[int]]] = {}
    case_refs: list[str] = []
    per_year: dict[int, int] = {}
    complaint = complaint_old = total_bytes = 0
    lo_size, size_span = size[0], size[1] - size[0]
    n_starts, n_senders, n_subjects = len(starts), len(senders), len(subjects)

    writer = FolderWriter(dovecot, user, folder)
    cur = str(writer.directory / "cur")
    uid, gid = dovecot.mail_uid, dovecot.mail_gid
    prefix = f"P{os.getpid()}{secrets.token_hex(3)}Q"
    host = _HOST
    flags_o = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    os_open, os_write, os_fchown, os_utime, os_close = (
        os.open,
        os.write,
        os.fchown,
        os.utime,
        os.close,
    )
    join = os.path.join

    for i in range(count):
        stamp = stamps[i]
        roll = rnd()
        sender = senders[int(rnd() * n_senders)]
        extra = b""
        follow = followups.pop(i, None)
        if follow is not None:
            topic, thread = follow
            subject = b"SV: " + encode_words(topic).encode("ascii")
            parents = b" ".join(mid(t) for t in thread)
            extra = b"In-Reply-To: " + mid(thread[-1]) + b"\nReferences: " + parents + b"\n"
            thread.append(i)
            complaint += 1
            complaint_old += stamp < cutoff
        elif roll < case_rate:
            topic = rng.choice(_CASE_TOPICS)
            year = time.gmtime(stamp).tm_year
            # Numbered per year like PROMIX's own (REK-2025-0042), so the default case
            # pattern REK-\d{4}-\d{4} links them.
            per_year[year] = number = per_year.get(year, 0) + 1
            ref = f"REK-{year}-{number:04d}"
            case_refs.append(ref)
            subject = encode_words(f"Reklamation {ref}: {topic}").encode("ascii")
            thread = [i]
            position = i
            for _ in range(1 + int(rnd() * 3)):
                position += 1 + int(rnd() * 300)
                while position in followups:
                    position += 1
                if position >= count:
                    break
                followups[position] = (topic, thread)
            complaint += 1
            complaint_old += stamp < cutoff
        elif roll < 0.15:
            sender, list_id = lists[int(rnd() * len(lists))]
            subject = list_subjects[int(rnd() * len(list_subjects))]
            extra = b"List-Id: " + list_id + b"\nPrecedence: bulk\n"
        elif roll < 0.35 and i:
            parent = i - 1 - int(rnd() * min(i, 50))
            subject = b"SV: " + subjects[parent % n_subjects]
            extra = b"In-Reply-To: " + mid(parent) + b"\nReferences: " + mid(parent) + b"\n"
        else:
            subject = subjects[int(rnd() * n_subjects)]
        head = b"".join(
            (
                b"Return-Path: <bulk@promix.example>\nMessage-ID: ",
                mid(i),
                b"\nDate: ",
                _rfc5322_date(stamp - 30),
                b"\nFrom: ",
                sender,
                b"\n",
                to_header,
                b"Subject: ",
                subject,
                b"\n",
                extra,
                mime,
                b"\n",
            )
        )
        target = lo_size + int(rnd() * size_span)
        offset = starts[int(rnd() * n_starts)]
        data = head + blob[offset : offset + max(0, target - len(head) - 1)] + b"\n"
        length = len(data)
        seen = "S" if rnd() < 0.9 else ""
        vsize = length + data.count(b"\n")
        name = f"{int(stamp)}.M{i % 1_000_000}{prefix}{i}.{host},S={length},W={vsize}:2,{seen}"
        fd = os_open(join(cur, name), flags_o, 0o600)
        if os_write(fd, data) != length:
            raise OSError(f"short write to {name}")
        os_fchown(fd, uid, gid)
        os_utime(fd, (stamp, stamp))
        os_close(fd)
        total_bytes += length

    if rescan:
        dovecot.rescan(user)
    return BulkSummary(
        folder=folder,
        count=count,
        bytes_written=total_bytes,
        seconds=time.perf_counter() - started,
        older_than_365_days=bisect.bisect_left(stamps, cutoff),
        complaint_messages=complaint,
        complaint_messages_older_than_365_days=complaint_old,
        case_refs=tuple(case_refs),
    )
