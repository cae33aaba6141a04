"""The parallel index pipeline (``index_pipeline``) against a real Dovecot, both back ends.

A large first sync is fetched in this process and parsed + inserted by spawned worker
processes. Proved here, with a low threshold and small fetch batches so a few thousand
messages make many batches: the index it builds is row for row the in-process one; a
parent killed with SIGKILL mid-sync, with later batches already committed out of order,
leaves no gap below its resume position and the next sync ends with exactly the
server's messages; a Ctrl-C and a worker's error (or death) end the sync with the
original exception and an index the next sync completes.
"""

from __future__ import annotations

import imaplib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot
from mailhygiene.devtools.mailbox import deliver, generate_bulk, message_bytes
from mailhygiene.errors import InputError, MailhygieneError
from mailhygiene.imap import client as client_module
from mailhygiene.imap.client import ImapMailServer, parse_index_fetch
from mailhygiene.index import SyncProgress, SyncRequest, SyncResult, sync_account
from mailhygiene.index_pipeline import parallel_source
from mailhygiene.mailbox import IndexedMessage
from mailhygiene.processes import Parallelism
from mailhygiene.store import index_queries as q
from mailhygiene.store.models import Account, Folder, Message
from mailhygiene.store.session import Store, open_store
from tests.store_fixtures import StoreTarget, store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
BATCH = 100  # messages per UID FETCH here: many batches from a small mailbox
PARALLEL = Parallelism(workers=2, threshold=1)
IN_PROCESS = Parallelism(workers=0)
POISON_UID = 777  # the parser below fails on the batch holding this UID


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "FETCH_BATCH", BATCH)


# ------------------------------------------------------------------------------ helpers


def settings_for(account: ImapAccount) -> AccountSettings:
    return AccountSettings(
        name="support",
        host=account.host,
        port=account.port,
        security="none",
        username=account.username,
        password=PasswordSource(env="MH_UNUSED"),
        timeout=60.0,
    )


class CountingProgress:
    def __init__(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.batches = 0
        self.fetched_total = 0
        self._on_batch = on_batch

    def folder_started(self, folder: str, to_fetch: int) -> None:
        return None

    def fetched(self, count: int) -> None:
        self.batches += 1
        self.fetched_total += count
        if self._on_batch is not None:
            self._on_batch(self.batches)

    def folder_finished(self, result: object) -> None:
        return None


def sync(
    store: Store,
    account: ImapAccount,
    parallel: Parallelism,
    *,
    name: str = "support",
    server_class: type[ImapMailServer] = ImapMailServer,
    progress: SyncProgress | None = None,
) -> SyncResult:
    settings = settings_for(account)
    request = SyncRequest(
        account=name, host=account.host, username=account.username, only_folders=("INBOX",)
    )
    with server_class(settings, account.password) as server:
        return sync_account(store, server, request, now=NOW, progress=progress, parallel=parallel)


def server_uids(account: ImapAccount) -> list[int]:
    conn = imaplib.IMAP4(account.host, account.port)
    try:
        conn.login(account.username, account.password)
        conn.select("INBOX", readonly=True)
        _typ, data = conn.uid("SEARCH", "ALL")
        return sorted(int(x) for x in data[0].split())
    finally:
        conn.logout()


def expunge(account: ImapAccount, uid: int) -> None:
    conn = imaplib.IMAP4(account.host, account.port)
    try:
        conn.login(account.username, account.password)
        conn.select("INBOX")
        conn.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        conn.uid("EXPUNGE", str(uid))
    finally:
        conn.logout()


def stored(store: Store, account: str = "support") -> list[tuple[Any, ...]]:
    """Every indexed column of the account's INBOX rows but the row id, by UID."""
    columns = [c for c in Message.__table__.columns if c.name not in ("id", "folder_id")]
    with store.transaction() as session:
        query = (
            select(*columns)
            .join(Folder, Message.folder_id == Folder.id)
            .join(Account, Folder.account_id == Account.id)
            .where(Account.name == account, Folder.name == "INBOX")
            .order_by(Message.uid)
        )
        return [tuple(row) for row in session.execute(query)]


def resume_position(store: Store, account: str = "support") -> int:
    with store.transaction() as session:
        position = session.scalar(
            select(Folder.synced_uidnext)
            .join(Account, Folder.account_id == Account.id)
            .where(Account.name == account, Folder.name == "INBOX")
        )
    return int(position or 1)


def assert_consistent(store: Store, account: ImapAccount) -> int:
    """No duplicate rows, and every server UID below the resume position is indexed."""
    with store.transaction() as session:
        total = session.scalar(select(func.count()).select_from(Message)) or 0
        distinct = session.scalar(select(func.count(func.distinct(Message.uid)))) or 0
        uids = set(session.scalars(select(Message.uid)))
    assert total == distinct
    position = resume_position(store)
    assert {u for u in server_uids(account) if u < position} <= uids
    return position


def assert_complete(store: Store, account: ImapAccount) -> None:
    """The index holds exactly the server's messages, once each."""
    expected = server_uids(account)
    assert [row[0] for row in stored(store)] == expected
    assert resume_position(store) > expected[-1]


def fill(dovecot: ThrowawayDovecot, account: ImapAccount, count: int) -> None:
    generate_bulk(dovecot, account.username, "INBOX", count, now=NOW, size=(600, 900))


def wait_until_gone(pids: list[int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"worker {pid} outlived its killed parent")


def poisoned_parser(data: list[Any]) -> list[IndexedMessage]:
    """Parses like the real one, but fails on the batch that holds ``POISON_UID``."""
    messages = parse_index_fetch(data)
    if any(m.uid == POISON_UID for m in messages):
        raise InputError(f"simulated parse failure at UID {POISON_UID}")
    return messages


class PoisonedServer(ImapMailServer):
    @property
    def raw_index_parser(self) -> Callable[[list[Any]], list[IndexedMessage]]:
        return poisoned_parser


# ------------------------------------------------------------------------------ choice


def test_small_syncs_and_private_databases_stay_in_process(tmp_path: Path) -> None:
    shared = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    memory = open_store("sqlite://")
    server = ImapMailServer.__new__(ImapMailServer)  # never connected: only its type counts
    try:
        assert parallel_source(shared, server, 20_000, Parallelism(workers=2)) is server
        assert parallel_source(shared, server, 19_999, Parallelism(workers=2)) is None
        assert parallel_source(shared, server, 50_000, Parallelism(workers=0)) is None
        assert parallel_source(memory, server, 50_000, Parallelism(workers=2)) is None
        assert parallel_source(shared, object(), 50_000, Parallelism(workers=2)) is None
    finally:
        shared.close()
        memory.close()


# ------------------------------------------------------------------------------ insert


def test_bulk_insert_stores_what_the_orm_would_and_replaces_on_refetch(store: Store) -> None:
    """``insert_messages`` writes straight to the driver; the values must be SQLAlchemy's
    (SQLite's datetime text ``YYYY-MM-DD HH:MM:SS.ffffff``, JSON of the extra headers)."""
    stockholm = timezone(timedelta(hours=1))
    message = IndexedMessage(
        uid=7,
        flags=("\\Seen", "$Label"),
        internal_date=datetime(2025, 1, 2, 3, 4, 5, tzinfo=stockholm),
        size=1234,
        modseq=9,
        message_id="a@x.example",
        in_reply_to="b@x.example",
        references=("c@x.example", "b@x.example"),
        thread_index="AQHb",
        thread_topic="Fråga",
        subject='Fråga om "leverans" \\ x',
        from_addr="asa@kund.example",
        from_name="Åsa",
        to_addrs=("support@promix.example", "b@y.example"),
        cc_addrs=(),
        reply_to=("r@kund.example",),
        date_header=datetime(2025, 1, 2, 2, 4, 5, 123456, tzinfo=UTC),
        date_raw=None,
        extra_headers={"list-id": "Lista <l.x>", "x-mailer": 'a\u2028\x01"é'},
        problems=("8bit-header", "no-date"),
    )
    with store.transaction() as session:
        account = q.ensure_account(session, "a", "h", "u", NOW)
        bulk = q.ensure_folder(session, account, "bulk").id
        orm = q.ensure_folder(session, account, "orm").id
        q.insert_messages(session, bulk, [message], NOW)
        session.add(
            Message(
                folder_id=orm,
                uid=7,
                message_id="a@x.example",
                in_reply_to="b@x.example",
                references_ids="c@x.example b@x.example",
                thread_index="AQHb",
                thread_topic="Fråga",
                subject=message.subject,
                from_addr="asa@kund.example",
                from_name="Åsa",
                to_addrs="support@promix.example b@y.example",
                cc_addrs="",
                reply_to="r@kund.example",
                date_header=message.date_header,
                date_raw=None,
                internal_date=message.internal_date,
                size=1234,
                flags="\\Seen $Label",
                modseq=9,
                extra_headers=json.dumps(message.extra_headers, ensure_ascii=False),
                problems="8bit-header no-date",
                thread_id=None,
                indexed_at=NOW,
            )
        )
    columns = ", ".join(
        c.name for c in Message.__table__.columns if c.name not in ("id", "folder_id")
    )
    read = text(f"SELECT {columns} FROM messages ORDER BY folder_id")  # noqa: S608
    with store.engine.connect() as connection:
        written = [tuple(row) for row in connection.execute(read)]
    assert len(written) == 2
    assert written[0] == written[1]
    if store.is_sqlite:
        assert "2025-01-02 02:04:05.000000" in written[0]  # 03:04:05 at +01:00

    # Fetched again (a resumed sync): the row is replaced, not duplicated.
    changed = replace(message, subject="ny", flags=())
    with store.transaction() as session:
        q.insert_messages(session, bulk, [changed, changed], NOW)
    with store.transaction() as session:
        rows = session.execute(
            select(Message.subject, Message.flags).where(Message.folder_id == bulk)
        )
        assert rows.all() == [("ny", "")]


# ------------------------------------------------------------------------------ identity


@pytest.mark.dovecot
def test_parallel_sync_indexes_exactly_what_the_in_process_sync_does(
    store: Store, dovecot: ThrowawayDovecot, mailbox: ImapAccount
) -> None:
    fill(dovecot, mailbox, 1500)
    customer = "Åsa Öberg <Asa.Oberg@Kund.Example.SE>"
    odd = [
        message_bytes(subject="utan id", from_=customer, omit_headers=["Message-ID"]),
        message_bytes(subject="datum", from_=customer, date="tisdag kl 14.30"),
        message_bytes(subject="ÅÄÖ", from_=customer).replace(
            b"Subject: =?utf-8?q?=C3=85=C3=84=C3=96?=", b"Subject: Fr\xe5ga om \xf6l"
        ),
    ]
    for raw in odd:
        deliver(dovecot, mailbox.username, "INBOX", raw, internal_date=NOW)

    serial_progress, parallel_progress = CountingProgress(), CountingProgress()
    serial = sync(store, mailbox, IN_PROCESS, name="serial", progress=serial_progress)
    parallel = sync(store, mailbox, PARALLEL, name="parallel", progress=parallel_progress)

    rows = stored(store, "parallel")
    assert len(rows) == 1503
    assert rows == stored(store, "serial")
    assert resume_position(store, "parallel") == resume_position(store, "serial")
    assert (parallel.new, parallel.problems) == (serial.new, serial.problems)
    assert parallel.problems == {"no-message-id": 1, "date-unparseable": 1, "8bit-header": 1}
    assert parallel_progress.fetched_total == serial_progress.fetched_total == 1503
    assert parallel_progress.batches == serial_progress.batches == 16
    assert not multiprocessing.active_children()

    # A resync finds nothing new, and stays in this process.
    again = sync(store, mailbox, PARALLEL, name="parallel")
    assert (again.new, again.folders[0].expunged) == (0, 0)
    assert stored(store, "parallel") == rows


# ------------------------------------------------------------------------------ crash

_KILLED_SYNC = """
import json, sys, time
from datetime import datetime, UTC
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.imap import client
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.index_pipeline import Parallelism
from mailhygiene.store.session import open_store
import multiprocessing

url, schema, host, port, user, password = sys.argv[1:7]
client.FETCH_BATCH = 100
store = open_store(url, schema=schema or None)
settings = AccountSettings(name="support", host=host, port=int(port), security="none",
                           username=user, password=PasswordSource(env="X"), timeout=60)
batches = 0

def after_batch():
    global batches
    batches += 1
    if batches == 2:
        pids = [p.pid for p in multiprocessing.active_children()]
        print(json.dumps(pids), flush=True)
        time.sleep(120)  # the test kills us here; the workers go on committing

if __name__ == "__main__":
    with ImapMailServer(settings, password) as server:
        sync_account(store, server, SyncRequest("support", host, user, only_folders=("INBOX",)),
                     now=datetime(2026, 3, 2, 12, tzinfo=UTC), after_batch=after_batch,
                     parallel=Parallelism(workers=2, threshold=1))
    print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.dovecot
def test_parent_killed_mid_sync_leaves_no_gap_and_the_next_sync_ends_exact(
    store: Store,
    store_target: StoreTarget,
    dovecot: ThrowawayDovecot,
    mailbox: ImapAccount,
    tmp_path: Path,
) -> None:
    fill(dovecot, mailbox, 1500)
    script = tmp_path / "killed_sync.py"
    script.write_text(_KILLED_SYNC)
    args = [store_target.url, store_target.schema or "", mailbox.host, str(mailbox.port)]
    child = subprocess.Popen(
        [sys.executable, str(script), *args, mailbox.username, mailbox.password],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        workers = json.loads(line)
        assert len(workers) == 2
        time.sleep(0.5)  # let the workers commit batches the parent will never record
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    wait_until_gone(workers)

    position = assert_consistent(store, mailbox)
    with store.transaction() as session:
        above = sorted(session.scalars(select(Message.uid).where(Message.uid >= position)))
    # The parent had seen two batches committed (and records the position at most every
    # quarter second); the workers committed more on their own.
    assert position <= 2 * BATCH + 1
    assert above, "the workers should have committed batches past the resume position"
    # One of those messages disappears before the next sync: its row must go too.
    expunge(mailbox, above[0])

    resumed = sync(store, mailbox, PARALLEL)
    assert resumed.new == 1500 - (position - 1) - 1
    assert_complete(store, mailbox)


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.dovecot
def test_ctrl_c_finishes_the_batches_in_hand_and_the_next_sync_completes(
    store: Store, dovecot: ThrowawayDovecot, mailbox: ImapAccount
) -> None:
    fill(dovecot, mailbox, 1500)

    def ctrl_c(batches: int) -> None:
        if batches == 3:  # as a terminal does: the whole process group gets SIGINT
            for worker in multiprocessing.active_children():
                os.kill(worker.pid or 0, signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    progress = CountingProgress(on_batch=ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        sync(store, mailbox, PARALLEL, progress=progress)
    assert not multiprocessing.active_children()
    position = assert_consistent(store, mailbox)
    # Everything handed to the workers was committed and recorded before giving up.
    assert position == progress.fetched_total + 1
    assert 3 * BATCH <= progress.fetched_total < 1500

    sync(store, mailbox, IN_PROCESS)
    assert_complete(store, mailbox)


# ------------------------------------------------------------------------------ errors


@pytest.mark.dovecot
def test_a_workers_error_reaches_the_caller_as_itself(
    store: Store, dovecot: ThrowawayDovecot, mailbox: ImapAccount
) -> None:
    fill(dovecot, mailbox, 1000)
    with pytest.raises(InputError, match=f"simulated parse failure at UID {POISON_UID}") as info:
        sync(store, mailbox, PARALLEL, server_class=PoisonedServer)
    assert any("in index worker process" in note for note in info.value.__notes__)
    assert not multiprocessing.active_children()
    position = assert_consistent(store, mailbox)
    assert position <= POISON_UID  # the failed batch is not under the resume position

    sync(store, mailbox, IN_PROCESS)
    assert_complete(store, mailbox)


@pytest.mark.dovecot
@pytest.mark.parametrize("store_target", ["sqlite"], indirect=True)  # not back-end specific
def test_a_worker_that_dies_ends_the_sync_with_a_clear_error(
    store: Store, dovecot: ThrowawayDovecot, mailbox: ImapAccount
) -> None:
    fill(dovecot, mailbox, 1000)

    def kill_a_worker(batches: int) -> None:
        if batches == 2:
            os.kill(multiprocessing.active_children()[0].pid or 0, signal.SIGKILL)

    with pytest.raises(MailhygieneError, match="worker process ended unexpectedly"):
        sync(store, mailbox, PARALLEL, progress=CountingProgress(on_batch=kill_a_worker))
    assert not multiprocessing.active_children()
    assert_consistent(store, mailbox)

    sync(store, mailbox, IN_PROCESS)
    assert_complete(store, mailbox)
