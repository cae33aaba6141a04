"""The purge engine against a real Dovecot: every path that moves or deletes mail refuses
when it should (unapproved, expired, altered plan; open case; hold; keyword added on the
server; changed UIDVALIDITY; message gone) and resumes safely after a crash."""

from __future__ import annotations

import imaplib
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot
from mailhygiene.devtools.mailbox import append_messages, message_bytes
from mailhygiene.errors import ImapError, MoveInDoubt, SafetyRefusal
from mailhygiene.holds import place_hold
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.mailbox import MessageIdentity
from mailhygiene.policy import Duration, Policy, PurgeAction
from mailhygiene.purge.approve import approve_plan
from mailhygiene.purge.execute import ExecutionReport, execute_plan
from mailhygiene.purge.model import ItemState
from mailhygiene.purge.plan import plan_purge
from mailhygiene.purge.quarantine import (
    QuarantineReport,
    expunge_due,
    list_quarantine,
    restore,
)
from mailhygiene.store import purge_queries
from mailhygiene.store.models import (
    Case,
    CaseThread,
    Message,
    Plan,
    PlanItem,
    PlanMember,
    QuarantineEntry,
)
from mailhygiene.store.session import Session, Store, open_store

pytestmark = pytest.mark.dovecot

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OLD = datetime(2025, 1, 10, 9, tzinfo=UTC)
RECENT = datetime(2026, 5, 20, 9, tzinfo=UTC)


@dataclass
class World:
    """One mailbox on Dovecot, its index, and a policy: 180 days, move to Quarantine."""

    account: ImapAccount
    settings: AccountSettings
    store: Store
    policy: Policy

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.account.host, self.account.port)
        conn.login(self.account.username, self.account.password)
        return conn

    def server(self) -> ImapMailServer:
        return ImapMailServer(self.settings, self.account.password)

    def deliver(self, folder: str, count: int, when: datetime, prefix: str) -> None:
        append_messages(
            self.account.host,
            self.account.port,
            self.account.username,
            self.account.password,
            folder,
            [
                (
                    message_bytes(
                        subject=f"{prefix} {i}",
                        from_="kund@example.se",
                        message_id=f"<{prefix}-{i}@example.se>",
                        date=when,
                    ),
                    (),
                    when,
                )
                for i in range(count)
            ],
        )

    def sync(self) -> None:
        request = SyncRequest(
            account=self.settings.name, host=self.settings.host, username=self.settings.username
        )
        with self.server() as server:
            sync_account(self.store, server, request, now=NOW)

    def plan(self, **kw: object) -> str:
        summary = plan_purge(
            self.store,
            self.policy,
            account=self.settings.name,
            now=kw.pop("now", NOW),
            actor="planner",
        )  # type: ignore[arg-type]
        assert summary.ref is not None
        return summary.ref

    def execute(self, ref: str, **kw: object):  # type: ignore[no-untyped-def]
        with self.server() as server:
            return execute_plan(
                self.store, server, self.policy, ref, actor="manager", now=kw.get("now", NOW)
            )  # type: ignore[arg-type]

    def folder_message_ids(self, folder: str) -> set[str]:
        conn = self.imap()
        conn.select(f'"{folder}"', readonly=True)
        _typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        conn.logout()
        found = set()
        for item in data:
            if isinstance(item, tuple):
                match = re.search(rb"<([^>]+)>", item[1])
                if match:
                    found.add(match.group(1).decode().lower())
        return found

    def items(self, ref: str) -> list[Any]:
        """The plan's items wherever they are (members, or the journal once executing)."""
        with self.store.transaction() as session:
            plan_id = session.scalar(select(Plan.id).where(Plan.ref == ref))
            assert plan_id is not None
            return list(session.execute(select(purge_queries.plan_entries(plan_id))))

    def stored_as(self, ref: str) -> dict[str, int]:
        """How many of the plan's items are members, and how many journal rows."""
        with self.store.transaction() as session:
            plan_id = session.scalar(select(Plan.id).where(Plan.ref == ref))
            return {
                name: session.scalar(
                    select(func.count()).select_from(table).where(table.plan_id == plan_id)
                )
                or 0
                for name, table in (("members", PlanMember), ("journal", PlanItem))
            }

    def start_executing(self, session: Session, ref: str) -> int:
        """What ``purge execute`` does first (and a kill -9 right after it leaves)."""
        plan_id = session.scalar(select(Plan.id).where(Plan.ref == ref))
        assert plan_id is not None
        purge_queries.write_journal(session, plan_id)
        session.execute(update(Plan).where(Plan.id == plan_id).values(status="executing"))
        return plan_id

    def restore(self, entry_ids: list[int]) -> QuarantineReport:
        """``quarantine restore`` of these ledger entries, as a manager, now."""
        with self.server() as server:
            return restore(
                self.store,
                server,
                self.policy,
                account="support",
                actor="manager",
                now=NOW,
                entry_ids=entry_ids,
            )

    def crashed_with_first_item_in_flight(self, ref: str) -> PlanItem:
        """What a run killed after marking the plan's lowest UID in flight leaves."""
        first = min(self.items(ref), key=lambda i: i.uid)
        with self.store.transaction() as session:
            self.start_executing(session, ref)
            session.execute(
                update(PlanItem)
                .where(PlanItem.id == first.id)
                .values(state=ItemState.IN_FLIGHT.value, batch=1)
            )
        return first

    def quarantine_by_uid(self) -> dict[int, str]:
        """UID → Message-ID of what is in the quarantine folder on the server."""
        conn = self.imap()
        conn.select('"Quarantine"', readonly=True)
        _typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        conn.logout()
        found = {}
        for item in data:
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0])
                message_id = re.search(rb"<([^>]+)>", item[1])
                if uid and message_id:
                    found[int(uid.group(1))] = message_id.group(1).decode()
        return found

    def assert_journal_names_where_each_message_went(self, ref: str) -> None:
        """Every moved item's ledger entry names its UID in quarantine."""
        on_server = self.quarantine_by_uid()
        with self.store.transaction() as session:
            rows = session.execute(
                select(QuarantineEntry.plan_item_id, QuarantineEntry.quarantine_uid).where(
                    QuarantineEntry.plan_ref == ref
                )
            )
            ledger = {item_id: uid for item_id, uid in rows}  # noqa: C416 - dict(Result) misreads
        done = [item for item in self.items(ref) if item.state == ItemState.DONE.value]
        assert done
        for item in done:
            assert on_server[ledger[item.id]].lower() == item.message_id.lower()


def new_world(account: ImapAccount, tmp_path: Path, policy: Policy) -> World:
    """A World for ``account`` (as "support") on a new SQLite index in ``tmp_path``."""
    settings = AccountSettings(
        name="support",
        host=account.host,
        port=account.port,
        security="none",
        username=account.username,
        password=PasswordSource(env="UNUSED"),
    )
    return World(account, settings, open_store(f"sqlite:///{tmp_path / 'mh.db'}"), policy)


@pytest.fixture
def world(mailbox: ImapAccount, tmp_path: Path) -> Iterator[World]:
    policy = Policy(
        default_keep=Duration.parse("180d"), auto_approve_limit=1000, source_hash="test-policy"
    )
    w = new_world(mailbox, tmp_path, policy)
    store = w.store
    w.deliver("INBOX", 6, OLD, "old")
    w.deliver("INBOX", 3, RECENT, "new")
    w.sync()
    yield w
    store.close()


def test_end_to_end_moves_only_expired_mail_to_quarantine(world: World) -> None:
    ref = world.plan()
    planned = world.items(ref)
    assert len(planned) == 6
    assert world.stored_as(ref) == {"members": 6, "journal": 0}
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    assert world.stored_as(ref) == {"members": 6, "journal": 0}
    report = world.execute(ref)
    assert world.stored_as(ref) == {"members": 0, "journal": 6}
    assert sorted(i.id for i in world.items(ref)) == sorted(i.id for i in planned)
    assert report.status == "done"
    assert report.done == 6
    assert not report.skipped
    assert world.folder_message_ids("INBOX") == {f"new-{i}@example.se" for i in range(3)}
    assert world.folder_message_ids("Quarantine") == {f"old-{i}@example.se" for i in range(6)}
    entries = list_quarantine(world.store, account="support")
    assert len(entries) == 6
    assert all(e.purge_after == NOW + timedelta(days=30) for e in entries)
    with world.store.transaction() as session:
        remaining = session.scalars(select(Message.message_id)).all()
    assert sorted(remaining) == sorted(f"new-{i}@example.se" for i in range(3))
    world.assert_journal_names_where_each_message_went(ref)
    with pytest.raises(SafetyRefusal, match="already executed"):
        world.execute(ref)  # a second run says what happened instead of "not approved"


def test_unapproved_plan_is_refused_and_nothing_moves(world: World) -> None:
    ref = world.plan()
    with pytest.raises(SafetyRefusal, match="not approved"):
        world.execute(ref)
    assert len(world.folder_message_ids("INBOX")) == 9


def test_expired_plan_cannot_be_approved_or_executed(world: World) -> None:
    ref = world.plan()
    later = NOW + timedelta(days=8)
    with pytest.raises(SafetyRefusal, match="expired"):
        approve_plan(world.store, ref, world.policy, actor="manager", now=later)
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    with pytest.raises(SafetyRefusal, match="expired"):
        world.execute(ref, now=later)
    assert len(world.folder_message_ids("INBOX")) == 9


@pytest.mark.parametrize("stored_as", [PlanMember, PlanItem], ids=["members", "journal"])
def test_plan_altered_after_approval_is_refused(
    world: World, stored_as: type[PlanMember | PlanItem]
) -> None:
    """Altered before executing starts (its members), or after (its journal; then a
    resumed execution finds it)."""
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    with world.store.transaction() as session:
        if stored_as is PlanItem:
            world.start_executing(session, ref)
        item_id = session.scalars(select(stored_as.id)).first()
        session.execute(update(stored_as).where(stored_as.id == item_id).values(uid=999))
    with pytest.raises(SafetyRefusal, match="altered"):
        world.execute(ref)
    assert len(world.folder_message_ids("INBOX")) == 9


def test_bulk_plan_needs_a_second_person(world: World) -> None:
    world.policy = replace(world.policy, auto_approve_limit=2)
    ref = world.plan()
    with pytest.raises(SafetyRefusal, match="another manager"):
        approve_plan(world.store, ref, world.policy, actor="planner", now=NOW)
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    assert world.execute(ref).done == 6


def _link_case(world: World, message_id: str, *, is_open: bool) -> None:
    with world.store.transaction() as session:
        session.execute(
            update(Message).where(Message.message_id == message_id).values(thread_id="thread-x")
        )
        case = Case(
            ref="REK-2025-0042",
            title="t",
            status="open" if is_open else "closed",
            created_how="manual",
            opened_at=NOW,
            opened_by="support",
            closed_at=None if is_open else NOW - timedelta(days=1),
        )
        session.add(case)
        session.flush()
        session.add(
            CaseThread(
                case_id=case.id,
                thread_id="thread-x",
                how="manual",
                linked_at=NOW,
                linked_by="support",
                note="",
            )
        )


def test_case_opened_after_the_plan_keeps_its_mail(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    _link_case(world, "old-0@example.se", is_open=True)
    report = world.execute(ref)
    assert report.done == 5
    assert report.skipped == {"kept now: case_open REK-2025-0042": 1}
    assert "old-0@example.se" in world.folder_message_ids("INBOX")


def test_hold_placed_after_the_plan_keeps_its_mail(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    place_hold(
        world.store,
        name="tvist-2026",
        query='subject:"old 1"',
        reason="court case",
        actor="admin",
        now=NOW,
    )
    report = world.execute(ref)
    assert report.done == 5
    assert report.skipped == {"kept now: hold tvist-2026": 1}
    assert "old-1@example.se" in world.folder_message_ids("INBOX")


def test_keyword_added_by_another_client_since_the_plan_keeps_the_message(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    conn = world.imap()
    conn.select("INBOX")
    _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", "old-2@example.se")
    conn.uid("STORE", data[0].decode(), "+FLAGS", "($Reklamation)")
    conn.logout()
    report = world.execute(ref)
    assert report.done == 5
    assert report.skipped == {"case keyword added on the server since the plan": 1}
    assert "old-2@example.se" in world.folder_message_ids("INBOX")


def test_changed_uidvalidity_skips_every_planned_message(world: World) -> None:
    world.deliver("Archive", 4, OLD, "arch")
    world.sync()
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    conn = world.imap()  # recreate "Archive" with the same mail: new UIDVALIDITY
    conn.rename("Archive", "Archive-old")
    conn.create("Archive")
    conn.select("Archive-old")
    conn.uid("MOVE", "1:*", "Archive")
    conn.logout()
    report = world.execute(ref)
    assert report.skipped.get("UIDVALIDITY changed since the plan") == 4
    assert report.done == 6
    assert len(world.folder_message_ids("Archive")) == 4


def test_message_expunged_by_someone_else_is_reported_not_an_error(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    conn = world.imap()
    conn.select("INBOX")
    _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", "old-3@example.se")
    conn.uid("STORE", data[0].decode(), "+FLAGS", "(\\Deleted)")
    conn.uid("EXPUNGE", data[0].decode())
    conn.logout()
    report = world.execute(ref)
    assert report.done == 5
    assert report.skipped == {"gone from the server before execution": 1}


def test_crash_between_journal_and_command_resumes_without_loss(world: World) -> None:
    """Simulate kill -9 at both points: before the MOVE was sent, and after it completed."""
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    items = sorted(world.items(ref), key=lambda i: i.uid)
    not_sent, sent = items[:2], items[2:4]
    with world.store.transaction() as session:
        world.start_executing(session, ref)
        session.execute(
            update(PlanItem)
            .where(PlanItem.id.in_([i.id for i in items[:4]]))
            .values(state=ItemState.IN_FLIGHT.value, batch=1)
        )
    conn = world.imap()  # the MOVE of the second pair had reached the server
    conn.create("Quarantine")
    conn.select("INBOX")
    conn.uid("MOVE", ",".join(str(i.uid) for i in sent), "Quarantine")
    conn.logout()
    report = world.execute(ref)
    assert report.status == "done"
    assert report.done == 6
    assert not report.skipped
    assert report.reconciled == {
        "not yet acted on; will be re-verified": 2,
        "completed before the interruption": 2,
    }
    assert world.folder_message_ids("Quarantine") == {f"old-{i}@example.se" for i in range(6)}
    assert len(list_quarantine(world.store, account="support")) == 6
    assert {i.message_id for i in not_sent} <= world.folder_message_ids("Quarantine")
    world.assert_journal_names_where_each_message_went(ref)


def test_resume_after_crash_in_delete_unflags_then_reverifies(world: World) -> None:
    """A crash after STORE \\Deleted but before UID EXPUNGE; meanwhile a case is opened."""
    world.policy = replace(world.policy, purge_action=PurgeAction.DELETE)
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    first = world.crashed_with_first_item_in_flight(ref)
    conn = world.imap()
    conn.select("INBOX")
    conn.uid("STORE", str(first.uid), "+FLAGS", "(\\Deleted)")
    conn.logout()
    _link_case(world, first.message_id, is_open=True)
    report = world.execute(ref)
    assert report.done == 5
    assert report.skipped == {"kept now: case_open REK-2025-0042": 1}
    conn = world.imap()
    conn.select("INBOX", readonly=True)
    _typ, data = conn.uid("FETCH", str(first.uid), "(FLAGS)")
    conn.logout()
    assert b"\\Deleted" not in data[0]


def test_no_bare_expunge_is_ever_sent(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.policy = replace(world.policy, purge_action=PurgeAction.DELETE)
    sent: list[bytes] = []
    original = imaplib.IMAP4.send

    def recording_send(self: imaplib.IMAP4, data: bytes) -> None:
        sent.append(data)
        original(self, data)

    monkeypatch.setattr(imaplib.IMAP4, "send", recording_send)
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    assert world.execute(ref).done == 6
    commands = [line.split(b" ", 1)[1] for line in sent if b" " in line]
    assert any(c.startswith(b"UID EXPUNGE ") for c in commands)
    assert not [c for c in commands if c.strip() == b"EXPUNGE"]
    assert world.folder_message_ids("INBOX") == {f"new-{i}@example.se" for i in range(3)}


def test_delete_is_refused_on_a_server_without_uidplus(tmp_path: Path) -> None:
    with ThrowawayDovecot(capabilities_off={"UIDPLUS", "MOVE"}) as server:
        policy = Policy(
            default_keep=Duration.parse("180d"), purge_action=PurgeAction.DELETE, source_hash="p"
        )
        w = new_world(server.account(), tmp_path, policy)
        store = w.store
        w.deliver("INBOX", 2, OLD, "old")
        w.sync()
        ref = w.plan()
        approve_plan(store, ref, policy, actor="manager", now=NOW)
        with pytest.raises(SafetyRefusal, match="UIDPLUS"):
            w.execute(ref)
        assert len(w.folder_message_ids("INBOX")) == 2
        store.close()


def test_a_doubtful_move_without_the_move_extension_is_settled_from_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without MOVE the fallback (COPY, ``\\Deleted``, ``UID EXPUNGE``) runs as it is sent;
    a warning from the server then surfaces where a pipelined move's answer would be
    read, so the batch is settled from the server like a pipelined one: what reached
    quarantine is done, with its ledger entry, and nothing else is touched."""
    with ThrowawayDovecot(capabilities_off={"MOVE"}) as server:
        policy = Policy(default_keep=Duration.parse("180d"), source_hash="p")
        w = new_world(server.account(), tmp_path, policy)
        store = w.store
        w.deliver("INBOX", 4, OLD, "old")
        w.deliver("INBOX", 2, NOW - timedelta(days=3), "new")
        w.sync()
        ref = w.plan()
        approve_plan(store, ref, policy, actor="manager", now=NOW)
        original = ImapMailServer.move

        def warned(self: ImapMailServer, uids: Sequence[int], destination: str) -> dict[int, int]:
            moved = original(self, uids, destination)
            raise MoveInDoubt("the server warned while moving", moved=moved)

        monkeypatch.setattr(ImapMailServer, "move", warned)
        with w.server() as connected:
            assert "MOVE" not in connected.capabilities
            read = connected.send_move([], "Quarantine")  # the warning waits to be read
            with pytest.raises(MoveInDoubt):
                read()
        report = w.execute(ref)
        assert report.status == "done"
        assert report.done == 4
        assert report.reconciled == {"completed before the interruption": 4}
        assert w.folder_message_ids("Quarantine") == {f"old-{i}@example.se" for i in range(4)}
        assert w.folder_message_ids("INBOX") == {f"new-{i}@example.se" for i in range(2)}
        assert len(list_quarantine(store, account="support")) == 4
        store.close()


def test_restore_the_server_warned_about_closes_only_what_left_quarantine(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server moves one of two messages back and warns: the moved one is restored,
    the other stays held in quarantine (and a later restore brings it back)."""
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    world.execute(ref)
    entries = list_quarantine(world.store, account="support")[:2]
    original = ImapMailServer.move

    def half_then_warned(
        self: ImapMailServer, uids: Sequence[int], destination: str
    ) -> dict[int, int]:
        moved = original(self, list(uids)[:1], destination)
        raise MoveInDoubt("the server warned while moving", moved=moved)

    monkeypatch.setattr(ImapMailServer, "move", half_then_warned)

    report = world.restore([e.id for e in entries])
    assert report.restored == 1
    assert report.skipped == {"the server warned while moving it back; still in quarantine": 1}
    held = {e.message_id for e in list_quarantine(world.store, account="support")}
    back = {e.message_id for e in entries} - held
    assert len(back) == 1
    assert back <= world.folder_message_ids("INBOX")
    assert {e.message_id for e in entries} & held <= world.folder_message_ids("Quarantine")
    monkeypatch.undo()
    assert world.restore([e.id for e in entries]).restored == 1
    assert {e.message_id for e in entries} <= world.folder_message_ids("INBOX")


def test_quarantine_restore_and_expunge_after_grace(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    world.execute(ref)
    entries = list_quarantine(world.store, account="support")
    report = world.restore([entries[0].id])
    assert report.restored == 1
    assert entries[0].message_id in world.folder_message_ids("INBOX")
    world.sync()  # the quarantine folder must be indexed before final deletion
    with world.server() as server:
        early = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=29),
        )
        assert early.expunged == 0
        done = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    assert done.expunged == 5
    assert world.folder_message_ids("Quarantine") == set()
    assert entries[0].message_id in world.folder_message_ids("INBOX")


def test_quarantine_expunge_keeps_mail_that_got_a_case_keyword(world: World) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    world.execute(ref)
    conn = world.imap()
    conn.select("Quarantine")
    conn.uid("STORE", "1", "+FLAGS", "($Reklamation)")
    conn.logout()
    world.sync()
    with world.server() as server:
        report = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    assert report.expunged == 5
    assert sum(report.skipped.values()) == 1
    assert len(world.folder_message_ids("Quarantine")) == 1


# -- the second, read-only connection that reads identities beside the moves ----------


def _plan_in_batches(world: World) -> str:
    """36 planned messages in INBOX: 8 batches of 5 (the last of 1)."""
    world.deliver("INBOX", 30, OLD, "more")
    world.sync()
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    return ref


def _execute_in_batches(world: World, ref: str) -> ExecutionReport:
    with world.server() as server:
        return execute_plan(
            world.store, server, world.policy, ref, actor="manager", now=NOW, batch_size=5
        )


@dataclass
class ReaderSpy:
    """Records what execute_plan does with both connections, in order."""

    events: list[tuple[str, frozenset[int]]] = field(default_factory=list)
    readers: list[ImapMailServer] = field(default_factory=list)
    first_reads: list[frozenset[int]] = field(default_factory=list)  # on the moving connection

    def install(
        self,
        monkeypatch: pytest.MonkeyPatch,
        alter: Callable[[ImapMailServer, list[int], dict[int, MessageIdentity]], None] = (
            lambda _reader, _uids, _found: None
        ),
    ) -> None:
        send_move, open_reader = ImapMailServer.send_move, ImapMailServer.open_reader
        fetch_identity = ImapMailServer.fetch_identity

        def sending(
            server: ImapMailServer, uids: Sequence[int], destination: str
        ) -> Callable[[], dict[int, int]]:
            self.events.append(("move", frozenset(uids)))
            return send_move(server, uids, destination)

        def opening(server: ImapMailServer, folder: str, uidvalidity: int) -> ImapMailServer | None:
            reader = open_reader(server, folder, uidvalidity)
            assert reader is not None
            self.readers.append(reader)
            return reader

        def fetching(server: ImapMailServer, uids: Sequence[int]) -> dict[int, MessageIdentity]:
            if not any(server is reader for reader in self.readers):
                found = fetch_identity(server, uids)
                self.first_reads.append(frozenset(uids))
                return found
            self.events.append(("read", frozenset(uids)))
            found = fetch_identity(server, uids)
            # the moves' EXPUNGE notices reach this session and are dropped, not kept
            kept = server.client._imap.untagged_responses
            assert not {"EXPUNGE", "FETCH", "VANISHED"} & set(kept), kept
            alter(server, list(uids), found)
            return found

        monkeypatch.setattr(ImapMailServer, "send_move", sending)
        monkeypatch.setattr(ImapMailServer, "open_reader", opening)
        monkeypatch.setattr(ImapMailServer, "fetch_identity", fetching)


def test_next_batch_is_read_on_a_second_connection_while_the_move_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _plan_in_batches(world)
    spy = ReaderSpy()
    spy.install(monkeypatch)
    report = _execute_in_batches(world, ref)
    assert report.status == "done"
    assert report.done == 36
    assert not report.skipped
    assert len(spy.readers) == 1
    moves = [uids for kind, uids in spy.events if kind == "move"]
    assert [len(uids) for uids in moves] == [5] * 7 + [1]
    # Batch N+1 is read after batch N's move was sent and before its own: never earlier.
    expected = [("move", moves[0])]
    for batch in moves[1:]:
        expected += [("read", batch), ("move", batch)]
    assert spy.events == expected
    assert spy.first_reads == [moves[0]]  # only the first batch is read on the moving one
    assert world.folder_message_ids("INBOX") == {f"new-{i}@example.se" for i in range(3)}
    assert len(world.folder_message_ids("Quarantine")) == 36


def test_second_connection_lost_mid_run_falls_back_to_the_first(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _plan_in_batches(world)
    reads = {"n": 0}

    def lose_after_the_second_read(
        reader: ImapMailServer, _uids: list[int], _found: dict[int, MessageIdentity]
    ) -> None:
        reads["n"] += 1
        if reads["n"] == 2:  # the third read meets a lost connection
            reader.client._imap.sock.shutdown(socket.SHUT_RDWR)

    spy = ReaderSpy()
    spy.install(monkeypatch, lose_after_the_second_read)
    report = _execute_in_batches(world, ref)
    assert report.status == "done"
    assert report.done == 36
    assert not report.skipped  # nothing taken for gone because the reader failed
    moves = [uids for kind, uids in spy.events if kind == "move"]
    reads_aside = [uids for kind, uids in spy.events if kind == "read"]
    assert reads_aside == moves[1:4]  # the third read failed; none after it
    # the failed read's batch, and every batch after it, are read on the moving connection
    assert spy.first_reads == [moves[0], *moves[3:]]
    assert len(world.folder_message_ids("Quarantine")) == 36


def test_what_the_second_connection_misses_is_read_again_on_the_first(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's answer that lacks a message (as Dovecot's once did) does not make it
    "gone": only the connection that moves may say so."""
    ref = _plan_in_batches(world)
    dropped: list[int] = []

    def drop_one(
        _reader: ImapMailServer, _uids: list[int], found: dict[int, MessageIdentity]
    ) -> None:
        uid = min(found)
        dropped.append(uid)
        del found[uid]

    spy = ReaderSpy()
    spy.install(monkeypatch, drop_one)
    report = _execute_in_batches(world, ref)
    assert report.done == 36
    assert not report.skipped
    assert spy.first_reads[1:] == [frozenset([uid]) for uid in dropped]
    assert len(world.folder_message_ids("Quarantine")) == 36


def test_message_expunged_by_someone_else_is_gone_also_when_read_aside(world: World) -> None:
    ref = _plan_in_batches(world)
    conn = world.imap()
    conn.select("INBOX")
    _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", "more-20@example.se")
    conn.uid("STORE", data[0].decode(), "+FLAGS", "(\\Deleted)")
    conn.uid("EXPUNGE", data[0].decode())
    conn.logout()
    report = _execute_in_batches(world, ref)
    assert report.done == 35
    assert report.skipped == {"gone from the server before execution": 1}


def test_keyword_added_since_the_plan_keeps_the_message_also_when_read_aside(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flags the second connection reads are the server's now: a case keyword set
    by another client on a message of a later batch keeps it."""
    ref = _plan_in_batches(world)
    conn = world.imap()
    conn.select("INBOX")
    _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", "more-20@example.se")
    uid = int(data[0])
    conn.uid("STORE", str(uid), "+FLAGS", "($Reklamation)")
    conn.logout()
    spy = ReaderSpy()
    spy.install(monkeypatch)
    report = _execute_in_batches(world, ref)
    assert any(kind == "read" and uid in uids for kind, uids in spy.events)  # read aside
    assert report.done == 35
    assert report.skipped == {"case keyword added on the server since the plan": 1}
    assert "more-20@example.se" in world.folder_message_ids("INBOX")


def test_without_a_second_connection_the_run_reads_on_the_first(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _plan_in_batches(world)
    monkeypatch.setattr(ImapMailServer, "open_reader", lambda *_args: None)
    report = _execute_in_batches(world, ref)
    assert report.done == 36
    assert not report.skipped
    assert len(world.folder_message_ids("Quarantine")) == 36


def test_second_connection_opens_read_only_under_the_same_uidvalidity(world: World) -> None:
    with world.server() as server:
        status = server.select("INBOX", readonly=False)
        assert server.open_reader("INBOX", status.uidvalidity + 1) is None
        assert server.open_reader("No such folder", status.uidvalidity) is None
        reader = server.open_reader("INBOX", status.uidvalidity)
        assert reader is not None
        try:
            uids = server.search_uids()
            assert reader.fetch_identity(uids) == server.fetch_identity(uids)
            before = server.fetch_identity(uids[:1])
            with suppress(ImapError):  # EXAMINE: it can change nothing (Dovecot says OK)
                reader.add_flags(uids[:1], ["\\Seen"])
            assert server.fetch_identity(uids[:1]) == before
        finally:
            reader.close()


@dataclass
class OpeningSpy:
    """Records which thread opened which folder, and the second connections opened."""

    selects: list[tuple[str, str]] = field(default_factory=list)  # (thread name, folder)
    readers: list[ImapMailServer] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        select, open_reader = ImapMailServer.select, ImapMailServer.open_reader

        def selecting(server: ImapMailServer, folder: str, *, readonly: bool = True) -> Any:
            if not readonly:
                self.selects.append((threading.current_thread().name, folder))
            return select(server, folder, readonly=readonly)

        def opening(server: ImapMailServer, folder: str, uidvalidity: int) -> Any:
            reader = open_reader(server, folder, uidvalidity)
            if reader is not None:
                self.readers.append(reader)
            return reader

        monkeypatch.setattr(ImapMailServer, "select", selecting)
        monkeypatch.setattr(ImapMailServer, "open_reader", opening)

    def assert_every_reader_closed(self) -> None:
        assert self.readers
        assert all(reader._client is None for reader in self.readers)


def test_the_first_folder_is_opened_while_the_journal_is_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.deliver("Archive", 2, OLD, "archived")  # runs before INBOX, by name
    world.sync()
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    spy = OpeningSpy()
    spy.install(monkeypatch)
    moved: list[str] = []
    send_move = ImapMailServer.send_move

    def sending(server: ImapMailServer, uids: Sequence[int], destination: str) -> Any:
        moved.append(server._selected or "")
        return send_move(server, uids, destination)

    monkeypatch.setattr(ImapMailServer, "send_move", sending)
    with world.server() as server:
        report = execute_plan(
            world.store, server, world.policy, ref, actor="manager", now=NOW, batch_size=2
        )
    assert report.status == "done"
    assert report.done == 8
    assert spy.selects == [("mailhygiene-open_0", "Archive"), ("MainThread", "INBOX")]
    assert moved == ["Archive"] + ["INBOX"] * 3
    spy.assert_every_reader_closed()
    assert world.folder_message_ids("Archive") == set()
    assert len(world.folder_message_ids("Quarantine")) == 8


def test_a_plan_that_is_not_authorised_opens_no_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = world.plan()
    spy = OpeningSpy()
    spy.install(monkeypatch)
    with pytest.raises(SafetyRefusal, match="not approved"):
        world.execute(ref)
    assert spy.selects == []
    assert spy.readers == []


def test_a_second_connection_opened_ahead_but_not_needed_is_closed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.policy = replace(world.policy, purge_action=PurgeAction.DELETE)  # not pipelined
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    spy = OpeningSpy()
    spy.install(monkeypatch)
    assert world.execute(ref).done == 6
    spy.assert_every_reader_closed()


def test_a_run_that_resumes_in_flight_items_drops_what_was_opened_ahead(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    world.crashed_with_first_item_in_flight(ref)
    spy = OpeningSpy()
    spy.install(monkeypatch)
    report = world.execute(ref)
    assert report.done == 6
    assert not report.skipped
    spy.assert_every_reader_closed()
    assert world.folder_message_ids("Quarantine") == {f"old-{i}@example.se" for i in range(6)}


def test_a_folder_that_fails_to_open_ahead_stops_the_run_and_it_resumes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = world.plan()
    approve_plan(world.store, ref, world.policy, actor="manager", now=NOW)
    select = ImapMailServer.select

    def failing(server: ImapMailServer, folder: str, *, readonly: bool = True) -> Any:
        if threading.current_thread().name.startswith("mailhygiene-open"):
            raise ImapError("connection to the server was lost")
        return select(server, folder, readonly=readonly)

    monkeypatch.setattr(ImapMailServer, "select", failing)
    with pytest.raises(ImapError, match="lost"):
        world.execute(ref)
    assert len(world.folder_message_ids("INBOX")) == 9  # nothing moved
    assert {item.state for item in world.items(ref)} == {ItemState.PLANNED.value}
    monkeypatch.setattr(ImapMailServer, "select", select)
    report = world.execute(ref)
    assert report.status == "done"
    assert report.done == 6
