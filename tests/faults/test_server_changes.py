"""Another client changes the mailbox between plan and execute, mid-execution, mid-sync.

``tests/integration/test_purge.py`` covers the simple cases (expunged before execute,
case keyword before execute, UIDVALIDITY changed before execute). Here: a folder
deleted or renamed, a message moved to another folder, UIDVALIDITY changing between
two batches, the case keyword arriving between batches or inside a batch's window,
flags changing between verification and deletion (CONDSTORE), a message expunged in
the middle of a batch, and the mailbox changing while a sync runs. Every case is
judged by ``world.check_purge``: nothing that should stay is moved or deleted, and
every planned message is accounted for.
"""

from __future__ import annotations

import imaplib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailhygiene.devtools import ThrowawayDovecot
from mailhygiene.errors import ConnectError, MoveInDoubt
from mailhygiene.imap import client as imap_client
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.policy import PurgeAction
from mailhygiene.purge.quarantine import expunge_due
from mailhygiene.store.models import Folder, Message, QuarantineDoubt
from tests.faults.purge_runner import then
from tests.faults.world import (
    NOW,
    OLD,
    RECENT,
    FaultWorld,
    check_purge,
    drop_world,
    fault_policy,
    index_mismatches,
    new_world,
    quote_folder,
)

pytestmark = pytest.mark.dovecot

BATCH = 5


@pytest.fixture
def world(dovecot: ThrowawayDovecot, tmp_path: Path) -> Iterator[FaultWorld]:
    """INBOX: 20 old (in-0…19) and 3 recent; Archive/2024: 10 old (ar-0…9); synced."""
    made = new_world(dovecot, f"sqlite:///{tmp_path / 'mh.db'}")
    for i in range(20):
        made.plant("INBOX", f"in-{i}", OLD + timedelta(hours=i))
    for i in range(3):
        made.plant("INBOX", f"new-{i}", RECENT)
    for i in range(10):
        made.plant("Archive/2024", f"ar-{i}", OLD + timedelta(hours=i))
    made.rescan()
    made.sync()
    yield made
    drop_world(made)


def uid_of(conn: imaplib.IMAP4, key: str) -> str:
    """The UID of planted message ``key`` in the selected folder (of another client)."""
    _typ, data = conn.uid("SEARCH", "HEADER", "X-Fault-Key", key)  # a substring search
    exact = []
    for uid in data[0].split():
        _typ, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (X-Fault-Key)])")
        if isinstance(fetched[0], tuple) and fetched[0][1].split()[-1].decode() == key:
            exact.append(uid.decode())
    assert len(exact) == 1, (key, exact)
    return str(exact[0])


def other_client(world: FaultWorld, folder: str) -> imaplib.IMAP4:
    conn = world.imap()
    conn.select(quote_folder(folder))
    return conn


def hook_calls(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    *,
    before: dict[int, Callable[[], None]] | None = None,
    after: dict[int, Callable[[], None]] | None = None,
) -> None:
    """Run ``before[n]`` / ``after[n]`` around the n-th call of ``ImapMailServer.<method>``.

    ``send_move`` (a pipelined move) returns the function that reads the server's answer:
    ``after[n]`` runs once that answer has been read, i.e. the move is done.
    """
    original = getattr(ImapMailServer, method)
    calls = {"n": 0}

    def wrapped(self: ImapMailServer, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        call = calls["n"]
        if before and call in before:
            before[call]()
        result = original(self, *args, **kwargs)
        if after and call in after:
            if method == "send_move":
                return then(result, after[call])
            after[call]()
        return result

    monkeypatch.setattr(ImapMailServer, method, wrapped)


def planned(world: FaultWorld) -> tuple[str, Any]:
    ref = world.plan()
    world.approve(ref)
    return ref, world.server_state()


# -- between plan and execute --------------------------------------------------------


def test_folder_deleted_after_the_plan_skips_its_items_and_touches_nothing_else(
    world: FaultWorld,
) -> None:
    ref, before = planned(world)
    conn = world.imap()
    assert conn.delete(quote_folder("Archive/2024"))[0] == "OK"
    conn.logout()
    report = world.execute(ref, batch_size=BATCH)
    assert report.status == "done"
    assert report.skipped == {"folder 'Archive/2024' no longer exists": 10}
    check = check_purge(world, ref, before)
    # the folder's messages were deleted by the other client, not by us
    assert [p for p in check.unaccounted if not p.startswith("ar-")] == []
    assert check.done == 20
    assert not check.wrongly_removed
    assert not check.duplicates
    assert "Archive/2024" not in world.server_state().messages


def test_folder_renamed_after_the_plan_is_not_followed(world: FaultWorld) -> None:
    ref, _before = planned(world)
    conn = world.imap()
    assert conn.rename(quote_folder("Archive/2024"), quote_folder("Archive/Old"))[0] == "OK"
    conn.logout()
    report = world.execute(ref, batch_size=BATCH)
    assert report.skipped == {"folder 'Archive/2024' no longer exists": 10}
    after = world.server_state()
    assert sorted(k for k, _f in after.messages["Archive/Old"].values()) == sorted(
        f"ar-{i}" for i in range(10)
    )
    assert report.done == 20
    assert {k for k, _f in after.messages["Quarantine"].values()} == {f"in-{i}" for i in range(20)}


def test_message_moved_to_another_folder_is_skipped_and_its_copy_left_alone(
    world: FaultWorld,
) -> None:
    ref, before = planned(world)
    conn = other_client(world, "INBOX")
    conn.create(quote_folder("Kept"))
    assert conn.uid("MOVE", uid_of(conn, "in-3"), quote_folder("Kept"))[0] == "OK"
    conn.logout()
    report = world.execute(ref, batch_size=BATCH)
    assert report.skipped == {"gone from the server before execution": 1}
    after = world.server_state()
    assert [k for k, _f in after.messages["Kept"].values()] == ["in-3"]
    check = check_purge(world, ref, before, after=after)
    assert check.wrongly_removed == []
    assert check.duplicates == []
    assert check.unaccounted == [
        "in-3 skipped (gone from the server before execution) but at [('Kept', 1)], not INBOX:4"
    ]


def test_flags_changed_after_the_plan_do_not_matter(world: FaultWorld) -> None:
    """Seen/Flagged/Answered are not protection: such mail still goes, nothing else does."""
    ref, before = planned(world)
    conn = other_client(world, "INBOX")
    for key in ("in-1", "in-2"):
        conn.uid("STORE", uid_of(conn, key), "+FLAGS", "(\\Flagged \\Answered)")
    conn.uid("STORE", uid_of(conn, "in-4"), "-FLAGS", "(\\Seen)")
    conn.logout()
    report = world.execute(ref, batch_size=BATCH)
    assert report.done == 30
    assert not report.skipped
    check = check_purge(world, ref, before)
    assert check.ok, check.problems()


# -- during execution ----------------------------------------------------------------


def test_case_keyword_added_between_batches_keeps_the_message(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, before = planned(world)

    def add_keyword() -> None:  # after the first batch; in-12 is in the third INBOX batch
        conn = other_client(world, "INBOX")
        conn.uid("STORE", uid_of(conn, "in-12"), "+FLAGS", "($Reklamation)")
        conn.logout()

    hook_calls(monkeypatch, "send_move", after={3: add_keyword})  # 2 Archive batches, then INBOX
    report = world.execute(ref, batch_size=BATCH)
    assert report.skipped == {"case keyword added on the server since the plan": 1}
    check = check_purge(world, ref, before, protected={"in-12"})
    assert check.ok, check.problems()


def test_case_keyword_added_inside_a_batch_window_is_caught_by_the_quarantine(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UID MOVE has no UNCHANGEDSINCE: a keyword set between a batch's verification and its
    MOVE cannot stop the move. The quarantine is the net: expunge re-checks the keyword."""
    ref, before = planned(world)

    def add_keyword() -> None:  # in-0 is in the batch being moved right now
        conn = other_client(world, "INBOX")
        conn.uid("STORE", uid_of(conn, "in-0"), "+FLAGS", "($Reklamation)")
        conn.logout()

    hook_calls(monkeypatch, "send_move", before={3: add_keyword})
    report = world.execute(ref, batch_size=BATCH)
    assert report.done == 30
    check = check_purge(world, ref, before)
    assert check.ok, check.problems()
    world.sync()  # the quarantine folder must be indexed before final deletion
    with world.server() as server:
        final = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    # The sync linked the marked message's thread to a new untriaged case: that keeps it.
    [(reason, count)] = [(k, v) for k, v in final.skipped.items() if v]
    assert (reason.startswith("kept now: case_open UNTRIAGED-"), count) == (True, 1), reason
    assert final.expunged == 29
    left = world.server_state().messages["Quarantine"]
    assert [key for key, _flags in left.values()] == ["in-0"]


def test_case_keyword_added_in_the_quarantine_after_the_last_sync_stops_its_deletion(
    world: FaultWorld,
) -> None:
    ref, _before = planned(world)
    report = world.execute(ref, batch_size=BATCH)
    assert report.done == 30
    world.sync()
    conn = other_client(world, "Quarantine")
    conn.uid("STORE", uid_of(conn, "in-3"), "+FLAGS", "($Reklamation_REK-2026-0001)")
    conn.logout()
    with world.server() as server:
        final = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    assert {k: v for k, v in final.skipped.items() if v} == {
        "case keyword added on the server since the last sync": 1
    }
    assert final.expunged == 29
    left = world.server_state().messages["Quarantine"]
    assert [key for key, _flags in left.values()] == ["in-3"]


def _recreate_archive(world: FaultWorld, newcomers: int = 0) -> None:
    """Another client recreates Archive/2024 under the same name (new UIDVALIDITY) with
    ``newcomers`` new messages (``arnew-N``, recent) first, then the mail that was still
    in it."""
    conn = world.imap()
    conn.rename(quote_folder("Archive/2024"), quote_folder("Archive/tmp"))
    conn.create(quote_folder("Archive/2024"))
    for n in range(newcomers):
        world.append("Archive/2024", f"arnew-{n}", RECENT)
    conn.select(quote_folder("Archive/tmp"))
    conn.uid("MOVE", "1:*", quote_folder("Archive/2024"))
    conn.close()
    conn.delete(quote_folder("Archive/tmp"))
    conn.logout()


def test_uidvalidity_changes_between_batches(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first batch of Archive/2024 another client recreates that folder under the
    same name (new UIDVALIDITY) with the remaining mail. The run may lose its selected
    folder (Dovecot ends the session: a clean ConnectError) — the next run must not touch
    the recreated folder's messages, whose UIDs now mean something else."""
    ref, before = planned(world)

    hook_calls(monkeypatch, "send_move", after={1: lambda: _recreate_archive(world)})
    try:
        report = world.execute(ref, batch_size=BATCH)
    except ConnectError:
        monkeypatch.undo()
        report = world.execute(ref, batch_size=BATCH)
    assert report.status == "done"
    after = world.server_state()
    archive = sorted(k for k, _f in after.messages["Archive/2024"].values())
    moved_first = {k for k, _f in after.messages["Quarantine"].values() if k.startswith("ar-")}
    assert len(moved_first) == BATCH  # the batch before the change
    assert sorted(set(archive) | moved_first) == sorted(f"ar-{i}" for i in range(10))
    assert after.uidvalidity["Archive/2024"] != before.uidvalidity["Archive/2024"]
    check = check_purge(world, ref, before, after=after)
    assert check.wrongly_removed == []
    assert check.duplicates == []
    assert check.ledger == []
    # The five left behind now live under new UIDs: reported as skipped, never touched.
    assert len(check.unaccounted) == 5
    assert all(p.startswith("ar-") and "skipped" in p for p in check.unaccounted), check
    assert check.done == 25


@pytest.mark.parametrize("newcomers", [0, 3], ids=["same-mail", "new-mail-first"])
def test_folder_recreated_while_a_verified_batch_waits_moves_nothing_unplanned(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch, newcomers: int
) -> None:
    """As ``test_uidvalidity_changes_between_batches``, with batches of 2: the batch
    verified while the first one moved has UIDs the recreated folder gives to other
    messages. Dovecot (its selected folder renamed away under it) moves those by UID,
    then warns ``* NO Internal error``: the run settles that batch from the server —
    planned mail found in quarantine is done, with its ledger entry; the rest is skipped
    as UIDVALIDITY changed — and puts back what no planned item claims (``arnew-*``, new
    mail the recreated folder holds at the reused UIDs). Nothing but what the journal
    says moved may be in quarantine."""
    ref, before = planned(world)
    hook_calls(monkeypatch, "send_move", after={1: lambda: _recreate_archive(world, newcomers)})
    try:
        report = world.execute(ref, batch_size=2)
    except ConnectError:
        monkeypatch.undo()
        report = world.execute(ref, batch_size=2)
    assert report.status == "done"
    after = world.server_state()
    check = check_purge(world, ref, before, after=after)
    assert check.wrongly_removed == []
    assert check.duplicates == []
    assert check.ledger == []
    assert check.audit_ok, check.audit_problem
    # nothing the journal calls moved is still elsewhere, nothing else reached quarantine
    wrong = [p for p in check.unaccounted if "done but at" in p or "('Quarantine'" in p]
    assert wrong == [], check
    newcomer_places = {
        key: places for key, places in after.locations().items() if key.startswith("arnew-")
    }
    assert sorted(newcomer_places) == [f"arnew-{n}" for n in range(newcomers)]
    assert all(
        [folder for folder, _uid in places] == ["Archive/2024"]
        for places in newcomer_places.values()
    ), newcomer_places


def _copy_to_quarantine(world: FaultWorld, key: str) -> int:
    """Another client copies INBOX's ``key`` to Quarantine; returns the copy's UID."""
    conn = other_client(world, "INBOX")
    typ, data = conn.uid("COPY", uid_of(conn, key), "Quarantine")
    assert typ == "OK", data
    code = conn.untagged_responses.pop("COPYUID", [b""])[0]
    conn.logout()
    return int(code.split()[-1])


@pytest.mark.parametrize("server_fault", ["moved", "copied"])
def test_a_move_in_doubt_is_checked_by_the_next_run_when_the_session_ends(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch, server_fault: str
) -> None:
    """The server warns while moving INBOX's first batch, and its COPYUID shows it put
    new-0 (recent, never planned) in quarantine too — moved, or only copied (Dovecot
    failing half-way through a move); the connection is then lost before the batch is
    settled. What it moved was recorded first: the next run settles the batch (its
    planned mail is done, with ledger entries) and puts new-0 back in INBOX, or removes
    the copy when new-0 is still there."""
    ref, before = planned(world)
    new_0 = next(uid for uid, (key, _f) in before.messages["INBOX"].items() if key == "new-0")
    original_move, original_select = ImapMailServer.send_move, ImapMailServer.select
    calls = {"moves": 0, "doubted": 0}

    def doubtful_move(
        self: ImapMailServer, uids: Any, destination: str
    ) -> Callable[[], dict[int, int]]:
        calls["moves"] += 1
        if calls["moves"] != 3:  # Archive/2024 has two batches; this is INBOX's first
            return original_move(self, uids, destination)
        taken_too = [new_0] if server_fault == "moved" else []
        read = original_move(self, [*uids, *taken_too], destination)

        def in_doubt() -> dict[int, int]:
            moved = read()
            if server_fault == "copied":
                moved[new_0] = _copy_to_quarantine(world, "new-0")
            calls["doubted"] += 1
            raise MoveInDoubt("the server warned while moving", moved=moved)

        return in_doubt

    def lost_select(self: ImapMailServer, folder: str, *, readonly: bool = True) -> Any:
        if calls["doubted"]:
            raise ConnectError("the server ended the session")
        return original_select(self, folder, readonly=readonly)

    monkeypatch.setattr(ImapMailServer, "send_move", doubtful_move)
    monkeypatch.setattr(ImapMailServer, "select", lost_select)
    with pytest.raises(ConnectError):
        world.execute(ref, batch_size=BATCH)
    monkeypatch.undo()
    report = world.execute(ref, batch_size=BATCH)
    assert report.status == "done"
    after = world.server_state()
    check = check_purge(world, ref, before, after=after)
    if server_fault == "moved":
        assert report.reconciled["unplanned mail the server moved, put back"] == 1
        assert [folder for folder, _uid in after.locations()["new-0"]] == ["INBOX"]
        # new-0 is back where it was, under a new UID; nothing else was touched
        assert [p.split(" -> ")[0] for p in check.wrongly_removed] == [f"new-0 INBOX:{new_0}"]
    else:
        assert "unplanned mail the server moved, put back" not in report.reconciled
        assert after.locations()["new-0"] == [("INBOX", new_0)]  # the copy is gone
        assert check.wrongly_removed == []
    assert (check.unaccounted, check.ledger, check.duplicates) == ([], [], [])
    assert check.done == 30
    assert check.audit_ok, check.audit_problem
    with world.store.transaction() as session:
        assert session.scalars(select(QuarantineDoubt)).all() == []


@pytest.mark.parametrize("session_knows", [False, True], ids=["unannounced", "announced"])
def test_message_expunged_inside_a_batch_window_is_not_reported_as_moved(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch, session_knows: bool
) -> None:
    """Someone expunges a message after its batch was verified, just before UID MOVE.

    Unannounced (our session has not seen the EXPUNGE yet), Dovecot refuses the whole
    MOVE with ``NO [EXPUNGEISSUED]`` and moves nothing: the run settles that batch from
    the server, as a resumed run would, and verifies the rest again. Announced (our
    session saw it), the MOVE succeeds for the rest and COPYUID leaves the gone UID out:
    that message must not be recorded as moved (nor get a quarantine ledger entry).
    Either way one run finishes the plan."""
    ref, before = planned(world)

    def expunge_one(server: ImapMailServer) -> None:
        conn = other_client(world, "INBOX")
        uid = uid_of(conn, "in-1")
        conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        conn.uid("EXPUNGE", uid)
        conn.logout()
        if session_knows:
            server.client.noop()

    original = ImapMailServer.send_move
    calls = {"n": 0}

    def move(self: ImapMailServer, uids: Any, destination: str) -> Callable[[], dict[int, int]]:
        calls["n"] += 1
        if calls["n"] == 3:  # the first INBOX batch, holding in-1
            expunge_one(self)
        return original(self, uids, destination)

    monkeypatch.setattr(ImapMailServer, "send_move", move)
    report = world.execute(ref, batch_size=BATCH)
    assert report.status == "done"
    # refused and settled from the server in the same run (only when unannounced)
    assert bool(report.reconciled) is not session_knows, report.reconciled
    check = check_purge(world, ref, before)
    assert check.wrongly_removed == []
    assert check.duplicates == []
    assert check.ledger == []
    assert check.unaccounted == [
        "in-1 skipped (" + next(iter(report.skipped)) + ") but at [], not INBOX:2"
    ], (check.unaccounted, report.skipped)
    assert sum(report.skipped.values()) == 1
    assert "gone" in next(iter(report.skipped))
    assert check.done == 29


def test_flags_changed_between_verification_and_delete_are_refused_by_condstore(
    dovecot: ThrowawayDovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delete mode: UID STORE … (UNCHANGEDSINCE m) refuses a message another client changed
    after verification; it is reported and left alone."""
    world = new_world(
        dovecot, f"sqlite:///{tmp_path / 'del.db'}", policy=fault_policy(action=PurgeAction.DELETE)
    )
    try:
        for i in range(12):
            world.plant("INBOX", f"d-{i}", OLD + timedelta(hours=i))
        world.rescan()
        world.sync()
        ref, before = planned(world)

        def touch() -> None:
            conn = other_client(world, "INBOX")
            conn.uid("STORE", uid_of(conn, "d-6"), "+FLAGS", "(\\Flagged)")
            conn.logout()

        hook_calls(monkeypatch, "delete", before={2: touch})
        report = world.execute(ref, batch_size=BATCH)
        assert report.skipped == {"changed on the server during execution": 1}
        check = check_purge(world, ref, before, protected={"d-6"})
        assert check.ok, check.problems()
    finally:
        drop_world(world)


# -- during a sync -------------------------------------------------------------------


def test_mailbox_changing_while_a_sync_runs_converges_on_the_next_sync(
    dovecot: ThrowawayDovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = new_world(dovecot, f"sqlite:///{tmp_path / 'sync.db'}")
    try:
        for i in range(60):
            world.plant("INBOX", f"s-{i}", OLD + timedelta(hours=i))
        world.rescan()
        monkeypatch.setattr(imap_client, "FETCH_BATCH", 10)
        state = {"done": False}

        def meddle() -> None:  # after the first fetched batch of the first sync
            if state["done"]:
                return
            state["done"] = True
            conn = other_client(world, "INBOX")
            conn.create(quote_folder("Elsewhere"))
            conn.uid(
                "MOVE", ",".join(uid_of(conn, f"s-{i}") for i in (2, 40)), quote_folder("Elsewhere")
            )
            gone = ",".join(uid_of(conn, f"s-{i}") for i in (3, 41))
            conn.uid("STORE", gone, "+FLAGS", "(\\Deleted)")
            conn.uid("EXPUNGE", gone)
            conn.uid("STORE", uid_of(conn, "s-5"), "+FLAGS", "($Reklamation)")
            conn.uid("STORE", uid_of(conn, "s-50"), "+FLAGS", "($Reklamation)")
            conn.logout()
            world.append("INBOX", "s-late", RECENT)

        request = SyncRequest(
            account="support", host=world.settings.host, username=world.settings.username
        )
        with world.server() as server:
            sync_account(world.store, server, request, now=NOW, after_batch=meddle)
        assert state["done"]
        world.sync()  # the next sync sees everything that changed meanwhile
        after = world.server_state()
        assert index_mismatches(world, after) == []
        with world.store.transaction() as session:
            flagged = session.scalars(
                select(Message.uid)
                .join(Folder, Folder.id == Message.folder_id)
                .where(Folder.name == "INBOX", Message.flags.contains("$Reklamation"))
            ).all()
        keys = {after.key_at("INBOX", uid) for uid in flagged}
        assert keys == {"s-5", "s-50"}
        # and a plan made now keeps the keyword mail, and plans nothing that is gone
        ref = world.plan()
        planned_keys = {after.key_at(i.folder, i.uid) for i in world.items(ref)}
        assert None not in planned_keys
        assert {"s-5", "s-50"}.isdisjoint(planned_keys)
    finally:
        drop_world(world)
