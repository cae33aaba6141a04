"""The dev/test harness itself: throwaway Dovecot, Maildir writers, demo and bulk mailboxes."""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mailhygiene.devtools import (
    ImapAccount,
    ThrowawayDovecot,
    default_capabilities,
    folder_dirname,
    imap_utf7_encode,
)
from mailhygiene.devtools.mailbox import (
    MALFORMED_KINDS,
    MailboxSummary,
    append_messages,
    deliver,
    encode_words,
    generate_bulk,
    generate_demo_mailbox,
    message_bytes,
    outlook_thread_index,
)

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


def login(account: ImapAccount) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(account.host, account.port, timeout=30)
    try:
        conn.login(account.username, account.password)
    except BaseException:
        conn.shutdown()
        raise
    return conn


def post_login_capabilities(account: ImapAccount) -> set[str]:
    conn = login(account)
    try:
        status, data = conn.capability()
        assert status == "OK"
        return {cap.decode().upper() for cap in data[-1].split()}
    finally:
        conn.logout()


def folder_names(conn: imaplib.IMAP4) -> set[str]:
    status, data = conn.list()
    assert status == "OK"
    return {
        line.rsplit(b' "/" ', 1)[1].strip(b'"').decode() for line in data if isinstance(line, bytes)
    }


def message_count(conn: imaplib.IMAP4, folder: str) -> int:
    status, data = conn.status(f'"{folder}"', "(MESSAGES)")
    assert status == "OK"
    match = re.search(rb"MESSAGES (\d+)", data[0] if isinstance(data[0], bytes) else b"")
    assert match
    return int(match.group(1))


def fetch_flags(conn: imaplib.IMAP4, uid: int) -> set[str]:
    status, data = conn.uid("FETCH", str(uid), "(FLAGS)")
    assert status == "OK"
    raw = data[0] if isinstance(data[0], bytes) else b""
    match = FLAGS_RE.search(raw)
    assert match, raw
    return {flag.decode() for flag in match.group(1).split()}


# ============================================================================ no server needed


def test_folder_dirname_follows_maildir_plus_plus() -> None:
    assert folder_dirname("INBOX") == ""
    assert folder_dirname("inbox") == ""
    assert folder_dirname("Archive/2024") == ".Archive.2024"
    assert folder_dirname("Kundtjänst/Överfört") == ".Kundtj&AOQ-nst.&ANY-verf&APY-rt"
    assert imap_utf7_encode("A&B") == "A&-B"
    with pytest.raises(ValueError, match="Maildir"):
        folder_dirname("v1.2")


def test_encoded_words_round_trip() -> None:
    from email.header import decode_header, make_header

    text = "Reklamation REK-2025-0042: skadad förpackning " * 3
    for charset, encoding in (("utf-8", "q"), ("iso-8859-1", "b"), ("iso-8859-1", "q")):
        encoded = encode_words(text, charset=charset, encoding=encoding)
        assert encoded.isascii()
        assert all(len(word) <= 75 for word in encoded.split())
        assert str(make_header(decode_header(encoded))) == text


def test_outlook_thread_index_layout() -> None:
    root = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    replies = [root + timedelta(hours=3), root + timedelta(days=2)]
    raw = base64.b64decode(outlook_thread_index(root, bytes(range(16)), replies))
    assert len(raw) == 22 + 5 * len(replies)
    assert raw[6:22] == bytes(range(16))
    assert raw[0] == 0x01  # FILETIME high byte for dates of this century


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        ThrowawayDovecot(capabilities_off={"NO-SUCH-THING"})
    assert "CONDSTORE" in default_capabilities()


# ============================================================================ lifecycle


@pytest.mark.dovecot
def test_start_login_stop(dovecot: ThrowawayDovecot) -> None:
    """dovecot fixture only ensures Dovecot is usable here; this test runs its own instance."""
    started = time.perf_counter()
    server = ThrowawayDovecot()
    server.start()
    try:
        assert time.perf_counter() - started < 2.0
        assert server.running
        assert server.host == "127.0.0.1"
        conn = login(server.account())
        assert conn.select("INBOX")[0] == "OK"
        conn.logout()
        root = server.root
    finally:
        server.stop()
    assert not server.running
    assert not root.exists()
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), 0.5):
        pass


@pytest.mark.dovecot
def test_startup_failure_raises_with_log_tail(dovecot: ThrowawayDovecot) -> None:
    server = ThrowawayDovecot(extra_config="no_such_setting_here = 1")
    with pytest.raises(RuntimeError, match="no_such_setting_here"):
        server.start()
    assert not server.running


@pytest.mark.dovecot
def test_two_instances_in_parallel(dovecot: ThrowawayDovecot) -> None:
    servers = [ThrowawayDovecot(), ThrowawayDovecot()]
    errors: list[BaseException] = []

    def start(server: ThrowawayDovecot) -> None:
        try:
            server.start()
        except BaseException as exc:  # re-raised below in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors
        assert len({s.port for s in (*servers, dovecot)}) == 3
        assert servers[0].root != servers[1].root
        for server in servers:
            conn = login(server.account())
            conn.create("OnlyHere")
            conn.logout()
        conn = login(dovecot.account())
        assert "OnlyHere" not in folder_names(conn)
        conn.logout()
    finally:
        for server in servers:
            server.stop()


@pytest.mark.dovecot
def test_new_user_logs_in_at_once(dovecot: ThrowawayDovecot, mailbox: ImapAccount) -> None:
    """Dovecot checks a passwd-file at most once a second; a new user's file is read at once."""
    login(mailbox).logout()
    username = mailbox.username.replace("@", "-second@")
    password = dovecot.add_user(username)
    account = dovecot.account(username)
    assert account.password == password
    conn = login(account)
    conn.create("Sent")
    conn.logout()
    assert dovecot.folder_dir(username, "Sent").is_dir()
    dovecot.remove_user(username)
    assert not dovecot.maildir_for(username).exists()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        login(ImapAccount(dovecot.host, dovecot.port, mailbox.username, "wrong password"))


# ============================================================================ capabilities


@pytest.mark.dovecot
def test_capability_off_variant_lacks_condstore(
    mailbox: ImapAccount, mailbox_nocondstore: ImapAccount
) -> None:
    full = post_login_capabilities(mailbox)
    reduced = post_login_capabilities(mailbox_nocondstore)
    assert {"CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS"} <= full
    assert full - reduced == {"CONDSTORE", "QRESYNC"}
    assert reduced <= full
    assert {c.upper() for c in default_capabilities()} == full


@pytest.mark.dovecot
def test_move_and_uidplus_can_be_switched_off(dovecot: ThrowawayDovecot) -> None:
    with ThrowawayDovecot(capabilities_off={"MOVE", "UIDPLUS"}) as server:
        conn = imaplib.IMAP4(server.host, server.port)
        assert "MOVE" not in conn.capabilities  # pre-login greeting follows the setting too
        conn.logout()
        caps = post_login_capabilities(server.account())
    assert "MOVE" not in caps
    assert "UIDPLUS" not in caps
    assert "CONDSTORE" in caps


# ============================================================================ writing mail


@pytest.mark.dovecot
def test_append_keywords_show_in_fetch_flags(mailbox: ImapAccount) -> None:
    when = NOW - timedelta(days=400)
    raw = message_bytes(
        subject="Reklamation REK-2025-0042: trasig leverans",
        from_="Åsa Öberg <asa.oberg@mail.example>",
        date=when,
        message_id="<case-42@mail.example>",
    )
    uids = append_messages(
        mailbox.host,
        mailbox.port,
        mailbox.username,
        mailbox.password,
        "Archive/2024",
        [(raw, ("\\Seen", "$Reklamation"), when), (raw, (), None)],
    )
    assert uids == [1, 2]
    conn = login(mailbox)
    try:
        conn.select('"Archive/2024"')
        assert fetch_flags(conn, 1) >= {"\\Seen", "$Reklamation"}
        assert "$Reklamation" not in fetch_flags(conn, 2)
        status, data = conn.uid("FETCH", "1", "(INTERNALDATE)")
        assert status == "OK"
        assert b"16-Oct-2024 12:00:00 +0000" in (data[0] if isinstance(data[0], bytes) else b"")
    finally:
        conn.logout()


@pytest.mark.dovecot
def test_direct_delivery_maps_keywords_like_dovecot(
    dovecot: ThrowawayDovecot, mailbox: ImapAccount
) -> None:
    user = mailbox.username
    first = message_bytes(subject="via IMAP", from_="a@mail.example")
    append_messages(
        mailbox.host, mailbox.port, user, mailbox.password, "INBOX", [(first, ("$Other",), None)]
    )
    when = datetime(2023, 5, 17, 8, 30, 15, tzinfo=UTC)
    path = deliver(
        dovecot,
        user,
        "INBOX",
        message_bytes(subject="direkt", from_="b@mail.example", date=when),
        internal_date=when,
        flags=("\\Seen", "\\Flagged"),
        keywords=("$Reklamation", "$Other"),
    )
    assert path.stat().st_uid == dovecot.mail_uid
    assert int(path.stat().st_mtime) == int(when.timestamp())
    conn = login(mailbox)
    try:
        conn.select("INBOX")
        assert fetch_flags(conn, 2) >= {"\\Seen", "\\Flagged", "$Reklamation", "$Other"}
        assert "$Reklamation" not in fetch_flags(conn, 1)
        status, data = conn.uid("FETCH", "2", "(INTERNALDATE RFC822.SIZE)")
        assert status == "OK"
        assert b"17-May-2023 08:30:15 +0000" in (data[0] if isinstance(data[0], bytes) else b"")
    finally:
        conn.logout()


# ============================================================================ demo mailbox


@pytest.fixture(scope="module")
def demo(dovecot: ThrowawayDovecot) -> Iterator[tuple[ImapAccount, MailboxSummary]]:
    user = "demo-module@promix.example"
    dovecot.add_user(user)
    summary = generate_demo_mailbox(dovecot, user, seed=7, now=NOW)
    yield dovecot.account(user), summary
    dovecot.remove_user(user)


@pytest.mark.dovecot
def test_demo_folders_and_counts(demo: tuple[ImapAccount, MailboxSummary]) -> None:
    account, summary = demo
    assert summary.folders == ("INBOX", "Sent", "Archive", "Archive/2024", "Archive/2025")
    assert 2900 <= summary.total <= 3100
    assert sum(summary.folder_counts.values()) == summary.total
    assert summary.malformed == dict.fromkeys(MALFORMED_KINDS, 2)
    for category in ("customer", "staff-reply", "bookkeeping", "newsletter", "decoy"):
        assert summary.category_counts[category] > 0
    conn = login(account)
    try:
        assert set(summary.folders) <= folder_names(conn)
        for folder, expected in summary.folder_counts.items():
            assert message_count(conn, folder) == expected, folder
    finally:
        conn.logout()


@pytest.mark.dovecot
def test_demo_complaint_threads_are_findable(demo: tuple[ImapAccount, MailboxSummary]) -> None:
    account, summary = demo
    linked_by = {case.linked_by for case in summary.cases}
    assert linked_by == {"references", "thread-index"}
    assert any(len(set(case.folders)) > 1 for case in summary.cases)
    conn = login(account)
    try:
        for case in summary.cases[:8]:
            assert case.ref_message_ids
            for message_id, folder in zip(case.message_ids, case.folders, strict=True):
                conn.select(f'"{folder}"', readonly=True)
                status, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
                assert status == "OK"
                assert len(data[0].split()) == 1, (case.ref, message_id, folder)
        reference_case = next(c for c in summary.cases if c.linked_by == "references")
        last_folder, last_id = reference_case.folders[-1], reference_case.message_ids[-1]
        conn.select(f'"{last_folder}"', readonly=True)
        _, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"{last_id}"')
        uid = data[0].split()[0].decode()
        _, fetched = conn.uid(
            "FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT REFERENCES IN-REPLY-TO)])"
        )
        headers = fetched[0][1] if isinstance(fetched[0], tuple) else b""
        assert reference_case.message_ids[0].encode() in headers
        assert reference_case.ref.encode() not in headers  # the reply dropped the case ref
    finally:
        conn.logout()


@pytest.mark.dovecot
def test_demo_is_deterministic(
    dovecot: ThrowawayDovecot, demo: tuple[ImapAccount, MailboxSummary], mailbox: ImapAccount
) -> None:
    _, first = demo
    second = generate_demo_mailbox(dovecot, mailbox.username, seed=7, now=NOW)

    def view(summary: MailboxSummary) -> list[tuple[object, ...]]:
        return [(m.folder, m.message_id, m.subject, m.internal_date) for m in summary.messages]

    assert view(first) == view(second)
    assert first.cases == second.cases


# ============================================================================ bulk mailbox


@pytest.mark.dovecot
def test_bulk_mailbox(dovecot: ThrowawayDovecot, mailbox: ImapAccount) -> None:
    count = 3000
    summary = generate_bulk(dovecot, mailbox.username, "INBOX", count, seed=3, now=NOW)
    assert summary.count == count
    assert 0.6 < summary.older_than_365_days / count < 0.73
    assert summary.rate > 0
    assert summary.case_refs
    assert len(set(summary.case_refs)) == len(summary.case_refs)
    assert all(re.fullmatch(r"REK-\d{4}-\d{4}", ref) for ref in summary.case_refs)
    conn = login(mailbox)
    try:
        status, data = conn.select("INBOX", readonly=True)
        assert (status, data[0]) == ("OK", str(count).encode())
        _, found = conn.uid("SEARCH", "BEFORE", "20-Nov-2024")
        assert abs(len(found[0].split()) - summary.older_than_365_days) < 30
        _, found = conn.uid("SEARCH", "HEADER", "List-Id", '""')
        assert 0.1 < len(found[0].split()) / count < 0.2
        _, found = conn.uid("SEARCH", "HEADER", "In-Reply-To", '""')
        assert len(found[0].split()) > count // 10
        _, sizes = conn.uid("FETCH", "1:*", "(RFC822.SIZE)")
        lines = b" ".join(item for item in sizes if isinstance(item, bytes))
        values = [int(m) for m in re.findall(rb"RFC822.SIZE (\d+)", lines)]
        assert len(values) == count
        assert min(values) >= 2000
        assert max(values) <= 8000 * 1.1
    finally:
        conn.logout()
