"""Malformed mail: index every message of CPython's email test data and a nasty set.

Each message is APPENDed to Dovecot over IMAP and the account is synced: no exception,
one index row per message, and the problems the index records where a message is
broken (``nul-in-header``, ``8bit-header``, ``unknown-charset``, ``no-message-id``, …).
The nasty set: NUL bytes, 1,000 levels of MIME nesting, a 10 MB header (and a 10 MB
Subject), invalid charsets and encoded words, bare CR / bare LF / mixed line ends, and
header injection through encoded words (CR LF and NUL smuggled into a Subject or a
From must not create or replace another field). The index runs on SQLite and on
PostgreSQL, which refuses NUL in text. A plan over the result must work as well.
"""

from __future__ import annotations

import imaplib
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.purge.plan import compute_plan
from mailhygiene.store.models import Folder, Message
from tests.faults.world import NOW, OLD, FaultWorld, drop_world, new_world, quote_folder
from tests.store_fixtures import StoreTarget, store_target_fixture  # noqa: F401

pytestmark = pytest.mark.dovecot

CPYTHON_DATA = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


@dataclass(frozen=True)
class Nasty:
    name: str
    raw: bytes
    problems: frozenset[str] = frozenset()  # expected among the recorded problems
    subject: str | None = None  # expected subject, when it matters
    from_addr: str | None = None  # expected sender, when it matters


def _head(*fields: bytes) -> bytes:
    return b"".join(fields)


BASE = b"From: Anna <anna@example.com>\r\nDate: Fri, 10 Jan 2025 09:00:00 +0100\r\n"


def _nested(depth: int) -> bytes:
    """``depth`` levels of multipart/mixed, each with its own boundary."""
    opening = b""
    closing = b""
    for level in range(depth):
        boundary = b"b%d" % level
        opening += b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--"
        opening += boundary + b"\r\n"
        closing = b"\r\n--" + boundary + b"--\r\n" + closing
    return opening + b"Content-Type: text/plain\r\n\r\ndeep\r\n" + closing


def nasty_messages() -> list[Nasty]:
    big = b"a" * (10 * 1024 * 1024)
    return [
        Nasty(
            "nul-in-header",
            BASE + b"Subject: nul\x00here\r\nMessage-ID: <nul1@x>\r\n\r\nb\r\n",
            frozenset({"8bit-header"}),
        ),  # Dovecot stores NUL as 0x80
        Nasty(
            "nul-in-body",
            BASE + b"Subject: body nul\r\nMessage-ID: <nul2@x>\r\n\r\na\x00b\r\n",
            subject="body nul",
        ),
        Nasty(
            "nul-encoded-word",
            BASE + b"Subject: =?utf-8?q?before=00after?=\r\nMessage-ID: <nul3@x>\r\n\r\nb\r\n",
        ),
        Nasty("nul-in-message-id", BASE + b"Subject: id\r\nMessage-ID: <a\x00b@x>\r\n\r\nb\r\n"),
        Nasty(
            "mime-1000-levels",
            BASE
            + b"Subject: deep\r\nMessage-ID: <deep@x>\r\nMIME-Version: 1.0\r\n"
            + _nested(1000),
            subject="deep",
        ),
        Nasty(
            "header-10mb",
            BASE
            + b"Subject: big header\r\nMessage-ID: <big1@x>\r\nX-Big: "
            + big
            + b"\r\n\r\nb\r\n",
            subject="big header",
        ),
        Nasty("subject-10mb", BASE + b"Message-ID: <big2@x>\r\nSubject: " + big + b"\r\n\r\nb\r\n"),
        Nasty(
            "folded-10mb-references",
            BASE + b"Subject: refs\r\nMessage-ID: <big3@x>\r\n"
            b"References: "
            + b"\r\n ".join(b"<r%d@x>" % i for i in range(400_000))
            + b"\r\n\r\nb\r\n",
            subject="refs",
        ),
        Nasty(
            "unknown-charset-word",
            BASE + b"Subject: =?x-no-such-charset?q?abc?=\r\nMessage-ID: <cs1@x>\r\n\r\nb\r\n",
            frozenset({"unknown-charset"}),
        ),
        Nasty(
            "bad-base64-word",
            BASE + b"Subject: =?utf-8?b?!!!not*base64?=\r\nMessage-ID: <cs2@x>\r\n\r\nb\r\n",
        ),
        Nasty(
            "charset-lies",
            BASE + b"Subject: =?us-ascii?q?=E5=E4=F6?=\r\nMessage-ID: <cs3@x>"
            b"\r\nContent-Type: text/plain; charset=klingon\r\n\r\n\xe5\xe4\xf6\r\n",
        ),
        Nasty(
            "raw-latin1-header",
            BASE + b"Subject: R\xe4kning f\xf6r m\xe5nad\r\nMessage-ID: <cs4@x>\r\n\r\nb\r\n",
            frozenset({"8bit-header"}),
        ),
        Nasty(
            "raw-invalid-utf8",
            BASE + b"Subject: \xff\xfe\xc3\x28 \xed\xa0\x80\r\nMessage-ID: <cs5@x>\r\n\r\nb\r\n",
            frozenset({"8bit-header"}),
        ),
        Nasty(
            "bare-lf",
            b"From: lf@example.com\nSubject: bare lf\nMessage-ID: <lf@x>\n\nb\n",
            subject="bare lf",
        ),
        Nasty("bare-cr", b"From: cr@example.com\rSubject: bare cr\rMessage-ID: <cr@x>\r\rb\r"),
        Nasty(
            "mixed-line-ends",
            b"From: mix@example.com\r\nSubject: mixed\nMessage-ID: <mix@x>"
            b"\r\r\nX-A: 1\n\r\n\rbody\r\n",
        ),
        Nasty(
            "injection-crlf-subject",
            BASE + b"Subject: =?utf-8?q?hello=0D=0AFrom:_evil@attacker.example=0D=0ABcc:"
            b"_all@x?=\r\nMessage-ID: <inj1@x>\r\n\r\nb\r\n",
            from_addr="anna@example.com",
        ),
        Nasty(
            "injection-crlf-from-name",
            b"From: =?utf-8?q?Anna=0D=0AFrom:_evil@attacker.example?= <anna@example.com>\r\n"
            b"Subject: from inj\r\nMessage-ID: <inj2@x>\r\n\r\nb\r\n",
            from_addr="anna@example.com",
        ),
        Nasty(
            "injection-second-from",
            BASE + b"From: evil@attacker.example\r\nSubject: two froms\r\n"
            b"Message-ID: <inj3@x>\r\n\r\nb\r\n",
            from_addr="anna@example.com",
        ),
        Nasty(
            "injection-in-message-id",
            BASE + b'Subject: id inj\r\nMessage-ID: <x"y\\\\z@x> ("; DROP TABLE messages; --)\r\n'
            b"\r\nb\r\n",
        ),
        Nasty("no-headers-at-all", b"\r\njust a body\r\n", frozenset({"no-message-id"})),
        Nasty(
            "header-without-colon",
            BASE + b"Subject: nc\r\nThis is not a header\r\nMessage-ID: <nc@x>\r\n\r\nb\r\n",
        ),
        Nasty(
            "empty-message-id",
            BASE + b"Subject: e\r\nMessage-ID: <>\r\n\r\nb\r\n",
            frozenset({"no-message-id"}),
        ),
        Nasty(
            "huge-message-id",
            BASE + b"Subject: h\r\nMessage-ID: <" + b"m" * 5000 + b"@x>\r\n\r\nb\r\n",
        ),
        Nasty(
            "dates-out-of-range",
            b"From: d@example.com\r\nDate: Mon, 31 Feb 99999 25:61:61 "
            b"+9999\r\nSubject: bad date\r\nMessage-ID: <d1@x>\r\n\r\nb\r\n",
            frozenset({"date-unparseable"}),
        ),
        Nasty(
            "date-year-zero",
            b"From: d@example.com\r\nDate: 1 Jan 0000 00:00:00 -2400\r\n"
            b"Subject: year zero\r\nMessage-ID: <d2@x>\r\n\r\nb\r\n",
        ),
        Nasty(
            "many-headers",
            BASE
            + b"Subject: many\r\nMessage-ID: <many@x>\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(50_000))
            + b"\r\nb\r\n",
        ),
        Nasty(
            "address-soup",
            b'From: "\\"<>@" <<<@>>>, ,,, @@@ ;; (comment\r\nTo: '
            + b",".join(b"u%d@x" % i for i in range(5000))
            + b"\r\nSubject: soup\r\n"
            b"Message-ID: <soup@x>\r\n\r\nb\r\n",
        ),
    ]


def _append(world: FaultWorld, folder: str, raw: bytes) -> int:
    conn = world.imap()
    try:
        conn.create(quote_folder(folder))
        typ, data = conn.append(quote_folder(folder), None, imaplib.Time2Internaldate(OLD), raw)
    finally:
        conn.logout()
    assert typ == "OK", f"Dovecot refused the APPEND: {data!r}"
    match = _APPENDUID.search(b" ".join(d for d in data if isinstance(d, bytes)))
    assert match is not None
    return int(match.group(1))


@pytest.fixture
def world(dovecot: ThrowawayDovecot, store_target: StoreTarget) -> Iterator[FaultWorld]:
    made = new_world(dovecot, store_target.url, schema=store_target.schema)
    yield made
    drop_world(made)


def _rows(world: FaultWorld, folder: str) -> dict[int, Message]:
    with world.store.transaction() as session:
        return {
            m.uid: m
            for m in session.scalars(
                select(Message)
                .join(Folder, Folder.id == Message.folder_id)
                .where(Folder.name == folder)
            )
        }


def test_every_cpython_email_test_message_is_indexed(world: FaultWorld) -> None:
    if not CPYTHON_DATA.is_dir():
        pytest.skip(f"CPython's email test data is not installed here ({CPYTHON_DATA})")
    files = sorted(CPYTHON_DATA.glob("msg_*.txt"))
    assert len(files) > 40
    uids = {_append(world, "CPython", path.read_bytes()): path.name for path in files}
    result = world.sync()
    rows = _rows(world, "CPython")
    assert set(rows) == set(uids), "every message gets exactly one index row"
    problems = {uids[uid]: row.problems for uid, row in rows.items() if row.problems}
    print(f"\n{len(rows)} CPython test messages indexed; with problems recorded: {problems}")
    assert sum(result.problems.values()) >= len(problems)
    compute_plan(world.store, world.policy, account="support", now=NOW, actor="test")


def test_mail_parser_test_mails_are_indexed(world: FaultWorld) -> None:
    import mailparser

    package = Path(mailparser.__file__).parent
    mails = [p for p in package.parent.glob("mail_parser*/**/*") if p.suffix in {".eml", ".msg"}]
    mails += [p for p in package.glob("**/*") if p.suffix == ".eml"]
    if not mails:
        pytest.skip(f"mail-parser ships no test mails in site-packages ({package})")
    uids = {_append(world, "MailParser", p.read_bytes()): p.name for p in mails}
    world.sync()
    assert set(_rows(world, "MailParser")) == set(uids)


def test_nasty_mail_is_indexed_with_its_problems_and_never_breaks_a_sync(
    world: FaultWorld,
) -> None:
    nasty = nasty_messages()
    uids = {_append(world, "Nasty", message.raw): message for message in nasty}
    result = world.sync()
    rows = _rows(world, "Nasty")
    assert set(rows) == set(uids), "every message gets exactly one index row"
    wrong: list[str] = []
    for uid, message in uids.items():
        row = rows[uid]
        recorded = set((row.problems or "").split())
        if not message.problems <= recorded:
            wrong.append(f"{message.name}: problems {recorded}, expected {set(message.problems)}")
        if message.subject is not None and row.subject != message.subject:
            wrong.append(f"{message.name}: subject {row.subject[:80]!r}")
        if message.from_addr is not None and row.from_addr != message.from_addr:
            wrong.append(f"{message.name}: from {row.from_addr!r}, not {message.from_addr!r}")
        for name, value in (
            ("subject", row.subject),
            ("from", row.from_addr),
            ("from name", row.from_name),
            ("message id", row.message_id),
        ):
            if any(ch in value for ch in "\r\n\x00"):
                wrong.append(f"{message.name}: CR/LF/NUL kept in the {name} {value[:80]!r}")
    print(f"\nnasty set: {len(rows)} indexed; problems by kind: {result.problems}")
    for uid, message in uids.items():
        print(
            f"  {message.name:26s} problems={rows[uid].problems!s:40s} "
            f"subject={rows[uid].subject[:40]!r} ({len(rows[uid].subject)} chars)"
        )
    assert not wrong, "\n".join(wrong)
    computed = compute_plan(world.store, world.policy, account="support", now=NOW, actor="t")
    assert computed.summary.item_count + sum(computed.summary.kept.values()) == len(nasty)
    world.sync()  # a second sync over the same mail changes nothing
    assert set(_rows(world, "Nasty")) == set(uids)
