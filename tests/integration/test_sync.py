"""Sync against a real Dovecot, on SQLite and PostgreSQL.

First sync of several folders (one with a non-ASCII name) with every indexed field
checked; incremental sync of appends, flag/keyword changes and expunges made by another
client, with CONDSTORE and with the fallback for servers without it; a no-change resync
that touches nothing; a UIDVALIDITY change; malformed mail (indexed, never skipped, with
its problems counted); and a sync interrupted by Ctrl-C that the next sync finishes.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Connection

from mailhygiene.cases.linking import link_new_mail
from mailhygiene.config.rules import load_rules
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot, imap_utf7_encode
from mailhygiene.devtools.mailbox import (
    append_messages,
    encode_words,
    generate_bulk,
    message_bytes,
)
from mailhygiene.imap import client as client_module
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.imap.headers import parse_index_fetch
from mailhygiene.index import FolderSyncResult, SyncResult, sync_account
from mailhygiene.index import SyncRequest as Request
from mailhygiene.store import session as session_module
from mailhygiene.store.models import Folder, Message
from mailhygiene.store.session import Store, open_store
from tests.net_faults import TcpProxy
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

pytestmark = pytest.mark.dovecot

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
REPO_RULES = Path(__file__).resolve().parents[2] / "rules.toml"
SENT_AT = datetime(2025, 11, 3, 8, 30, tzinfo=UTC)
RECEIVED_AT = datetime(2025, 11, 3, 8, 31, 7, tzinfo=UTC)
CUSTOMER = "Åsa Öberg <Asa.Oberg@Kund.Example.SE>"
SUPPORT = "PROMIX Kundtjänst <Support@Promix.Example>"
FOLDERS = ("INBOX", "Sent", "Archive/2024", "Kundtjänst")


# ------------------------------------------------------------------------------ helpers


def settings_for(account: ImapAccount, *, port: int | None = None) -> AccountSettings:
    return AccountSettings(
        name="support",
        host=account.host,
        port=account.port if port is None else port,
        security="none",
        username=account.username,
        password=PasswordSource(env="MH_UNUSED"),
        timeout=30.0,
    )


class RecordingServer(ImapMailServer):
    """An ``ImapMailServer`` that notes the UID commands it sends (``FETCH``, ``SEARCH`` …)."""

    def __init__(self, account: AccountSettings, password: str) -> None:
        super().__init__(account, password)
        self.commands: list[str] = []

    def _uid_command(self, action: str, *args: str | bytes) -> list[Any]:
        self.commands.append(str(args[0]))
        return super()._uid_command(action, *args)


def run_sync(
    store: Store,
    account: ImapAccount,
    *,
    port: int | None = None,
    commands: list[str] | None = None,
    after_batch: Callable[[], None] | None = None,
) -> SyncResult:
    settings = settings_for(account, port=port)
    request = Request(account=settings.name, host=settings.host, username=settings.username)
    server = RecordingServer(settings, account.password)
    with server:
        try:
            return sync_account(store, server, request, now=NOW, after_batch=after_batch)
        finally:
            if commands is not None:
                commands.extend(server.commands)


def by_folder(result: SyncResult) -> dict[str, FolderSyncResult]:
    return {f.folder: f for f in result.folders}


@dataclass(frozen=True)
class Row:
    """One indexed message, as the tests compare it."""

    folder: str
    uid: int
    message_id: str
    subject: str
    from_addr: str
    from_name: str
    to_addrs: str
    cc_addrs: str
    in_reply_to: str
    references: str
    date_header: datetime | None
    date_raw: str | None
    internal_date: datetime | None
    size: int
    flags: frozenset[str]
    problems: frozenset[str]
    extra_headers: str
    indexed_at: datetime


def index_rows(store: Store) -> list[Row]:
    with store.transaction() as session:
        found = session.execute(
            select(Folder.name, Message)
            .join(Folder, Message.folder_id == Folder.id)
            .order_by(Folder.name, Message.uid)
        ).all()
        return [
            Row(
                folder=name,
                uid=m.uid,
                message_id=m.message_id,
                subject=m.subject,
                from_addr=m.from_addr,
                from_name=m.from_name,
                to_addrs=m.to_addrs,
                cc_addrs=m.cc_addrs,
                in_reply_to=m.in_reply_to,
                references=m.references_ids,
                date_header=m.date_header,
                date_raw=m.date_raw,
                internal_date=m.internal_date,
                size=m.size,
                flags=frozenset(m.flags.split()),
                problems=frozenset((m.problems or "").split()),
                extra_headers=m.extra_headers,
                indexed_at=m.indexed_at,
            )
            for name, m in found
        ]


def folder_positions(store: Store) -> dict[str, tuple[int | None, int]]:
    """Folder → (UIDVALIDITY, resume UID) as the index stores them."""
    with store.transaction() as session:
        found = session.execute(select(Folder.name, Folder.uidvalidity, Folder.synced_uidnext))
        return {name: (validity, uidnext) for name, validity, uidnext in found}


def quoted(folder: str) -> str:
    return '"' + imap_utf7_encode(folder).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def imap_session(account: ImapAccount) -> Iterator[imaplib.IMAP4]:
    """Another client on the same account (plain imaplib, nothing of ours)."""
    conn = imaplib.IMAP4(account.host, account.port, timeout=30)
    try:
        conn.login(account.username, account.password)
        yield conn
        conn.logout()
    finally:
        if conn.state != "LOGOUT":
            conn.shutdown()


@dataclass(frozen=True)
class ServerFolder:
    uidvalidity: int
    uidnext: int
    messages: dict[int, tuple[frozenset[str], int]]  # uid → (flags, RFC822.SIZE)


_FETCHED = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\) RFC822\.SIZE (\d+)")


def server_folder(account: ImapAccount, folder: str) -> ServerFolder:
    with imap_session(account) as conn:
        typ, data = conn.select(quoted(folder), readonly=True)
        assert typ == "OK", data
        uidvalidity = int(conn.response("UIDVALIDITY")[1][0])
        uidnext = int(conn.response("UIDNEXT")[1][0])
        messages: dict[int, tuple[frozenset[str], int]] = {}
        if int(data[0] or 0):
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
            assert typ == "OK", data
            for line in data:
                match = _FETCHED.search(line if isinstance(line, bytes) else b"")
                assert match is not None, line
                flags = frozenset(match.group(2).decode().split()) - {"\\Recent"}
                messages[int(match.group(1))] = (flags, int(match.group(3)))
    return ServerFolder(uidvalidity, uidnext, messages)


def assert_index_matches_server(store: Store, account: ImapAccount, folders: Sequence[str]) -> None:
    """Every message on the server is indexed exactly once, with its flags, size, resume
    point and UIDVALIDITY; nothing else is indexed."""
    rows = index_rows(store)
    keys = [(r.folder, r.uid) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate (folder, uid) rows"
    positions = folder_positions(store)
    assert set(positions) == set(folders)
    for folder in folders:
        server = server_folder(account, folder)
        indexed = {r.uid: (r.flags, r.size) for r in rows if r.folder == folder}
        assert indexed == server.messages, folder
        assert positions[folder] == (server.uidvalidity, server.uidnext), folder


def append(account: ImapAccount, folder: str, *messages: tuple[bytes, Sequence[str]]) -> list[int]:
    return append_messages(
        account.host,
        account.port,
        account.username,
        account.password,
        folder,
        [(raw, flags, RECEIVED_AT) for raw, flags in messages],
    )


def plain(number: int, *, subject: str = "Fråga om order") -> bytes:
    return message_bytes(
        subject=f"{subject} {number}",
        from_=CUSTOMER,
        date=SENT_AT,
        message_id=f"<order-{number}@kund.example.se>",
    )


class MessageWrites:
    """Counts INSERT/UPDATE/DELETE statements on the ``messages`` table while attached."""

    _WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?messages\b", re.I)

    def __init__(self, store: Store) -> None:
        self.statements: list[str] = []
        self._engine = store.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if self._WRITE.match(statement):
            self.statements.append(statement)

    def detach(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


# ------------------------------------------------------------------------------ first sync


def test_first_sync_indexes_every_folder_once_with_every_field(
    store: Store, mailbox: ImapAccount
) -> None:
    question = message_bytes(
        subject="Fråga om leverans – order 4711",
        from_=CUSTOMER,
        to=SUPPORT,
        date="Mon, 3 Nov 2025 09:30:00 +0100",
        message_id="<CAF00.Mixed-Case@Kund.Example.SE>",
        headers=[("Cc", 'Bo Ek <BO.EK@Example.se>, "Per, P." <per@EXAMPLE.se>')],
    )
    answer = message_bytes(
        subject="SV: Fråga om leverans – order 4711",
        from_=SUPPORT,
        to=CUSTOMER,
        date=SENT_AT + timedelta(hours=2),
        message_id="<Reply.1@Promix.Example>",
        in_reply_to="<CAF00.Mixed-Case@Kund.Example.SE>",
        references=["<CAF00.Mixed-Case@Kund.Example.SE>"],
    )
    archived = message_bytes(
        subject="Kvitto",
        from_="Butik <kvitto@butik.example>",
        date="5 Mar 2024 10:15 +0100",
        message_id="<kvitto-2024@butik.example>",
    )
    latin1 = message_bytes(
        subject=encode_words("Återbetalning på väg", charset="iso-8859-1", encoding="b"),
        from_=CUSTOMER,
        date=SENT_AT,
        message_id="<refund@kund.example.se>",
    )
    append(mailbox, "INBOX", (question, ["\\Seen", "$Forwarded", "kund-viktig"]), (plain(1), []))
    append(mailbox, "Sent", (answer, ["\\Seen", "\\Answered"]))
    append(mailbox, "Archive/2024", (archived, ["\\Seen"]))
    append(mailbox, "Kundtjänst", (latin1, ["\\Flagged"]), (plain(2), ["\\Seen"]))

    result = run_sync(store, mailbox)

    assert {f: r.new for f, r in by_folder(result).items()} == {
        "INBOX": 2,
        "Sent": 1,
        "Archive/2024": 1,
        "Kundtjänst": 2,
    }
    assert not any(f.reindexed or f.flags_changed or f.expunged for f in result.folders)
    assert result.problems == {}
    assert "CONDSTORE" in result.capabilities
    assert_index_matches_server(store, mailbox, FOLDERS)

    rows = {r.message_id: r for r in index_rows(store)}
    assert len(rows) == 6
    first = rows["caf00.mixed-case@kund.example.se"]
    assert (first.folder, first.uid) == ("INBOX", 1)
    assert first.subject == "Fråga om leverans – order 4711"
    assert (first.from_addr, first.from_name) == ("asa.oberg@kund.example.se", "Åsa Öberg")
    assert first.to_addrs == "support@promix.example"
    assert first.cc_addrs == "bo.ek@example.se per@example.se"
    assert first.date_header == datetime(2025, 11, 3, 8, 30, tzinfo=UTC)
    assert first.date_raw is None
    assert first.internal_date == RECEIVED_AT
    assert first.size == len(question)
    assert first.flags == {"\\Seen", "$Forwarded", "kund-viktig"}
    assert first.problems == frozenset()

    reply = rows["reply.1@promix.example"]
    assert (reply.folder, reply.in_reply_to) == ("Sent", "caf00.mixed-case@kund.example.se")
    assert reply.references == "caf00.mixed-case@kund.example.se"
    assert reply.to_addrs == "asa.oberg@kund.example.se"
    assert reply.flags == {"\\Seen", "\\Answered"}

    receipt = rows["kvitto-2024@butik.example"]
    assert receipt.folder == "Archive/2024"
    assert receipt.date_header == datetime(2024, 3, 5, 9, 15, tzinfo=UTC)

    refund = rows["refund@kund.example.se"]
    assert (refund.folder, refund.subject) == ("Kundtjänst", "Återbetalning på väg")
    assert refund.flags == {"\\Flagged"}
    assert rows["order-2@kund.example.se"].folder == "Kundtjänst"


def test_an_address_list_mixing_bare_and_bracketed_addresses_keeps_them_all(
    mailbox: ImapAccount, tmp_path: Path
) -> None:
    raw = message_bytes(
        subject="Kopia",
        from_=CUSTOMER,
        to="per@EXAMPLE.se, Bo Ek <BO.EK@Example.se>",
        headers=[("Cc", "Bo Ek <BO.EK@Example.se>, per@EXAMPLE.se")],
    )
    append(mailbox, "INBOX", (raw, []))
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}")
    try:
        run_sync(store, mailbox)
        [row] = index_rows(store)
    finally:
        store.close()
    assert row.to_addrs == "per@example.se bo.ek@example.se"
    assert row.cc_addrs == "bo.ek@example.se per@example.se"


# ------------------------------------------------------------------------------ incremental


@pytest.mark.parametrize("fixture", ["mailbox", "mailbox_nocondstore"])
def test_incremental_sync_picks_up_appends_flag_changes_and_expunges(
    store: Store, request: pytest.FixtureRequest, fixture: str
) -> None:
    account: ImapAccount = request.getfixturevalue(fixture)
    append(account, "INBOX", *((plain(n), ["\\Seen"] if n == 1 else []) for n in range(1, 7)))
    first = run_sync(store, account)
    assert first.new == 6
    assert ("CONDSTORE" in first.capabilities) == (fixture == "mailbox")

    with imap_session(account) as other:
        other.select("INBOX")
        other.uid("STORE", "1", "-FLAGS", "(\\Seen)")
        other.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
        other.uid("STORE", "3", "+FLAGS", "(kund-viktig)")
        other.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        assert other.uid("EXPUNGE", "4")[0] == "OK"
    append(account, "INBOX", (plain(7), ["\\Seen", "arende-1"]), (plain(8), []))

    second = by_folder(run_sync(store, account))["INBOX"]
    assert (second.new, second.flags_changed, second.expunged) == (2, 3, 1)
    assert not second.reindexed
    assert_index_matches_server(store, account, ["INBOX"])
    rows = {r.uid: r for r in index_rows(store)}
    assert sorted(rows) == [1, 2, 3, 5, 6, 7, 8]
    assert (rows[1].flags, rows[2].flags, rows[3].flags) == (
        frozenset(),
        frozenset({"\\Flagged"}),
        frozenset({"kund-viktig"}),
    )
    assert rows[7].flags == {"\\Seen", "arende-1"}

    # Nothing changed: no message row is written, and with CONDSTORE not even one UID
    # command is sent; without it, the one FLAGS scan the fallback needs.
    before = index_rows(store)
    writes = MessageWrites(store)
    commands: list[str] = []
    try:
        third = by_folder(run_sync(store, account, commands=commands))["INBOX"]
    finally:
        writes.detach()
    assert (third.new, third.flags_changed, third.expunged, third.reindexed) == (0, 0, 0, False)
    assert writes.statements == []
    assert index_rows(store) == before
    assert commands == ([] if fixture == "mailbox" else ["FETCH"])


def test_expunge_and_append_of_as_many_messages_is_still_seen(
    store: Store, mailbox_nocondstore: ImapAccount
) -> None:
    """EXISTS is unchanged when one message goes and one comes; the sync must not be fooled."""
    account = mailbox_nocondstore
    append(account, "INBOX", (plain(1), []), (plain(2), []), (plain(3), []))
    run_sync(store, account)
    with imap_session(account) as other:
        other.select("INBOX")
        other.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        other.uid("EXPUNGE", "2")
    append(account, "INBOX", (plain(4), []))
    result = by_folder(run_sync(store, account))["INBOX"]
    assert (result.new, result.expunged) == (1, 1)
    assert_index_matches_server(store, account, ["INBOX"])


# ------------------------------------------------------------------------------ UIDVALIDITY


def test_uidvalidity_change_reindexes_without_duplicates_or_losses(
    store: Store, mailbox: ImapAccount
) -> None:
    append(mailbox, "INBOX", (plain(1), ["\\Seen"]))
    append(mailbox, "Archive/2024", *((plain(n), ["\\Seen"]) for n in range(10, 14)))
    run_sync(store, mailbox)
    old_validity = folder_positions(store)["Archive/2024"][0]
    inbox_before = [r for r in index_rows(store) if r.folder == "INBOX"]

    # Another client renames the folder away, recreates it and moves the mail back.
    with imap_session(mailbox) as other:
        assert other.rename(quoted("Archive/2024"), quoted("Gammalt arkiv"))[0] == "OK"
        assert other.create(quoted("Archive/2024"))[0] == "OK"
        other.select(quoted("Gammalt arkiv"))
        assert other.uid("MOVE", "1:*", quoted("Archive/2024"))[0] == "OK"
        other.close()
        assert other.delete(quoted("Gammalt arkiv"))[0] == "OK"
    append(mailbox, "Archive/2024", (plain(14), ["\\Flagged"]))
    assert server_folder(mailbox, "Archive/2024").uidvalidity != old_validity

    result = by_folder(run_sync(store, mailbox))
    assert result["Archive/2024"].reindexed
    assert result["Archive/2024"].new == 5
    assert (result["INBOX"].reindexed, result["INBOX"].new) == (False, 0)
    assert_index_matches_server(store, mailbox, ["INBOX", "Archive/2024"])
    archived = [r for r in index_rows(store) if r.folder == "Archive/2024"]
    assert sorted(r.message_id for r in archived) == [
        f"order-{n}@kund.example.se" for n in range(10, 15)
    ]
    assert [r for r in index_rows(store) if r.folder == "INBOX"] == inbox_before

    again = by_folder(run_sync(store, mailbox))["Archive/2024"]
    assert (again.new, again.reindexed, again.expunged) == (0, False, 0)


# ------------------------------------------------------------------------------ malformed


def test_malformed_mail_is_indexed_with_its_problems_never_skipped(
    store: Store, mailbox: ImapAccount
) -> None:
    big_body = "Bilaga i klartext.\n" + ("y" * 998 + "\n") * 25_200
    malformed = {
        "no-id": message_bytes(subject="utan id", from_=CUSTOMER, omit_headers=["Message-ID"]),
        "dup-a": message_bytes(subject="dubblett A", from_=CUSTOMER, message_id="<Dup@X.se>"),
        "dup-b": message_bytes(subject="dubblett B", from_=CUSTOMER, message_id="<dup@x.se>"),
        "bad-date": message_bytes(subject="datum", from_=CUSTOMER, date="tisdag kl 14.30"),
        "no-date": message_bytes(subject="inget datum", from_=CUSTOMER, omit_headers=["Date"]),
        # Raw Latin-1 bytes (0xE5 å, 0xF6 ö), no RFC 2047 encoding.
        "latin1": message_bytes(subject="ÅÄÖ", from_=CUSTOMER).replace(
            b"Subject: =?utf-8?q?=C3=85=C3=84=C3=96?=", b"Subject: Fr\xe5ga om \xf6l"
        ),
        "nul": message_bytes(
            subject="noll", from_=CUSTOMER, headers=[("X-Mailer", "Outlook\x00Express")]
        ),
        "huge": message_bytes(subject="stor bilaga", from_=CUSTOMER, body=big_body),
    }
    assert len(malformed["huge"]) > 25_000_000
    assert b"Subject: Fr\xe5ga om \xf6l\r\n" in malformed["latin1"]
    uids = dict(
        zip(
            malformed,
            append(mailbox, "INBOX", *((raw, []) for raw in malformed.values())),
            strict=True,
        )
    )

    with TcpProxy((mailbox.host, mailbox.port)) as counter:
        result = run_sync(store, mailbox, port=counter.port)
    # Only header fields travel: the 25 MB body is never fetched.
    assert counter.downstream < 100_000

    inbox = by_folder(result)["INBOX"]
    assert inbox.new == len(malformed)
    # Dovecot sends a NUL in a header as 0x80 (a literal may not hold NUL), so the
    # NUL message arrives as 8-bit garbage and is recorded as such.
    expected = {"no-message-id": 1, "date-unparseable": 1, "no-date": 1, "8bit-header": 2}
    assert inbox.problems == expected
    assert result.problems == expected
    assert_index_matches_server(store, mailbox, ["INBOX"])

    rows = {r.uid: r for r in index_rows(store)}
    row = {name: rows[uid] for name, uid in uids.items()}
    assert (row["no-id"].message_id, row["no-id"].problems) == ("", frozenset({"no-message-id"}))
    assert row["no-id"].subject == "utan id"
    assert row["dup-a"].message_id == row["dup-b"].message_id == "dup@x.se"
    assert row["dup-a"].uid != row["dup-b"].uid
    assert row["dup-a"].problems == row["dup-b"].problems == frozenset()
    assert row["bad-date"].problems == {"date-unparseable"}
    assert (row["bad-date"].date_header, row["bad-date"].date_raw) == (None, "tisdag kl 14.30")
    assert row["no-date"].problems == {"no-date"}
    assert (row["no-date"].date_header, row["no-date"].date_raw) == (None, None)
    assert row["latin1"].problems == {"8bit-header"}
    assert row["latin1"].subject == "Fråga om öl"
    assert row["nul"].problems == {"8bit-header"}
    assert row["nul"].subject == "noll"
    assert "\x00" not in row["nul"].extra_headers
    assert row["huge"].size == len(malformed["huge"])
    assert (row["huge"].subject, row["huge"].problems) == ("stor bilaga", frozenset())
    for name in ("no-id", "bad-date", "no-date", "latin1", "nul", "huge"):
        assert row[name].internal_date == RECEIVED_AT, name
        assert row[name].from_addr == "asa.oberg@kund.example.se", name


# ------------------------------------------------------------------------------ Ctrl-C


def test_sync_interrupted_by_ctrl_c_keeps_what_it_wrote_and_the_next_sync_finishes(
    store: Store,
    dovecot: ThrowawayDovecot,
    mailbox: ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "FETCH_BATCH", 40)  # several batches from few messages
    generate_bulk(dovecot, mailbox.username, "INBOX", 130, now=NOW)
    batches = 0

    def interrupt_after_first_batch() -> None:
        nonlocal batches
        batches += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sync(store, mailbox, after_batch=interrupt_after_first_batch)
    assert batches == 1
    with store.transaction() as session:
        kept = session.scalar(select(func.count()).select_from(Message))
    # The batch that was fetched is written, together with where to resume.
    assert kept == 40
    assert folder_positions(store)["INBOX"][1] == 41

    resumed = by_folder(run_sync(store, mailbox))["INBOX"]
    assert (resumed.new, resumed.expunged, resumed.reindexed) == (90, 0, False)
    assert_index_matches_server(store, mailbox, ["INBOX"])


# ---------------------------------------------------------------------- the FETCH reader


def test_the_fetch_reader_returns_what_imaplib_would_with_unsolicited_updates_between(
    mailbox: ImapAccount,
) -> None:
    """The index and identity fetches read responses off the wire themselves; the data
    must be exactly imaplib's, including messages with no indexed header at all (sent
    as an empty literal or ``""``) and a FLAGS update another client causes mid-way."""
    bare = b"X-Only: this message has none of the indexed headers\r\n\r\nbody\r\n"
    uids = append(
        mailbox,
        "INBOX",
        (plain(1), ["\\Seen"]),
        (bare, []),
        (plain(2, subject="Åsa"), ["$Reklamation"]),
    )
    items = "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])"
    uid_text = f"{uids[0]}:{uids[-1]}"
    with ImapMailServer(settings_for(mailbox), mailbox.password) as server:
        server.select("INBOX", readonly=False)
        with imap_session(mailbox) as other:
            other.select("INBOX")
            other.uid("STORE", str(uids[1]), "+FLAGS", "(\\Flagged)")
        first = server._uid_fetch("read", uid_text, items)  # the update arrives in it
        typ, theirs = server._raw.uid("FETCH", uid_text, items)
        ours = server._uid_fetch("read", uid_text, items)
    assert typ == "OK"
    assert ours == theirs
    assert len([item for item in ours if isinstance(item, tuple)]) >= 2
    [update] = [item for item in first if item not in theirs]
    assert isinstance(update, bytes)
    assert update.startswith(b"2 (")  # worded as imaplib words it: no "FETCH"
    assert b"\\Flagged" in update
    assert [item for item in first if item != update] == theirs
    assert parse_index_fetch(first) == parse_index_fetch(theirs)


def test_the_fetch_reader_turns_a_refusal_into_one_line(mailbox: ImapAccount) -> None:
    with ImapMailServer(settings_for(mailbox), mailbox.password) as server:
        server.select("INBOX")
        with pytest.raises(client_module.ImapError, match="refused to read"):
            server._uid_fetch("read", "1:*", "(NOSUCHITEM)")
        assert server.search_uids() == []  # the connection is still in step


def test_a_pipelined_fetch_stopped_early_leaves_the_connection_in_step(
    mailbox: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = append(mailbox, "INBOX", *((plain(n), []) for n in range(5)))
    monkeypatch.setattr(client_module, "FETCH_BATCH", 2)
    with ImapMailServer(settings_for(mailbox), mailbox.password) as server:
        server.select("INBOX")
        batches = server.fetch_index_raw(uids)
        first, _data = next(batches)  # the second batch's FETCH is on its way now
        batches.close()
        assert first == uids[:2]
        assert server.search_uids() == uids
        assert len(server._uid_fetch("read", "1:*", "(UID)")) == len(uids)
        assert [m.uid for batch in server.fetch_index(uids) for m in batch] == uids


@pytest.mark.parametrize("esearch", [True, False], ids=["ESEARCH", "plain SEARCH"])
def test_the_uid_search_gives_an_ascending_array_without_the_gaps(
    mailbox: ImapAccount, esearch: bool
) -> None:
    uids = append(mailbox, "INBOX", *((plain(n), []) for n in range(9)))
    with ImapMailServer(settings_for(mailbox), mailbox.password) as server:
        server.select("INBOX", readonly=False)
        server.delete([uids[2], uids[3], uids[6]])
        if not esearch:  # the answer of a server without ESEARCH: "* SEARCH 1 2 5 ..."
            server.capabilities = server.capabilities - {"ESEARCH"}
        kept = [uid for n, uid in enumerate(uids) if n not in (2, 3, 6)]
        found = server.search_uid_array()
        assert found.typecode == "Q"
        assert list(found) == server.search_uids() == kept
        assert list(server.search_uid_array(uids[4])) == kept[2:]
        # "n:*" names the highest UID even when n is above it; it is left out.
        assert list(server.search_uid_array(uids[-1] + 5)) == []


def test_settling_a_bulk_load_runs_outside_any_transaction_on_both_databases(
    store: Store, mailbox: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync of many messages VACUUMs on PostgreSQL (which refuses inside a
    transaction); a small threshold makes this sync one."""
    monkeypatch.setattr(session_module, "BULK_CHANGE_MIN", 3)
    append(mailbox, "INBOX", *((plain(n), []) for n in range(4)))
    run_sync(store, mailbox)
    store.settle_bulk_load()  # and again, by hand: idempotent
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 4
        if store.is_sqlite:  # the planner has statistics: messages are read by rowid
            stats = session.execute(text("SELECT tbl FROM sqlite_stat1")).scalars().all()
            assert "messages" in stats


def test_a_sync_and_its_threading_settle_the_table_only_after_a_bulk_write(
    store: Store, mailbox: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync, and the threading that rewrites every row it indexed, settle the
    messages table; a few new messages in a larger mailbox do not (autovacuum's share)."""
    settled: list[int] = []
    real_settle = Store.settle_bulk_load

    def counting_settle(self: Store) -> None:
        settled.append(1)
        real_settle(self)

    monkeypatch.setattr(Store, "settle_bulk_load", counting_settle)
    monkeypatch.setattr(session_module, "BULK_CHANGE_MIN", 3)
    policy = load_rules(REPO_RULES)
    append(mailbox, "INBOX", *((plain(n), []) for n in range(40)))
    assert run_sync(store, mailbox).new == 40
    assert len(settled) == 1
    threading = link_new_mail(store, policy, "support", now=NOW, actor="test")
    assert threading.threaded == 40
    assert len(settled) == 2
    assert "settle" in threading.phases

    append(mailbox, "INBOX", *((plain(n), []) for n in range(40, 43)))  # 3 new of 43
    assert run_sync(store, mailbox).new == 3
    assert link_new_mail(store, policy, "support", now=NOW, actor="test").threaded == 3
    assert len(settled) == 2
