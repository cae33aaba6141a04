"""Data-subject requests against a real Dovecot: a person (Anna) who appears across INBOX,
Sent and Archive, in an open complaint case and in a held thread — found in every header
form, exported byte for byte, and erased through plan → approve → execute (held, case and
bookkeeping mail survive; the rest goes to quarantine and, after the grace period, for
good); the audit log records the request, the export and the erasure."""

from __future__ import annotations

import csv
import email.policy
import hashlib
import imaplib
import json
import re
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import mailparser
import pytest
from sqlalchemy import select, update

from mailhygiene import reports, restrictions
from mailhygiene.audit import log as audit
from mailhygiene.config.rules import load_rules
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount, ThrowawayDovecot
from mailhygiene.devtools.mailbox import FolderWriter, append_messages, message_bytes
from mailhygiene.errors import InputError, SafetyRefusal
from mailhygiene.holds import place_hold
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.policy import Policy
from mailhygiene.purge.approve import approve_plan
from mailhygiene.purge.execute import execute_plan
from mailhygiene.purge.quarantine import expunge_due
from mailhygiene.store.models import Case, CaseThread, Folder, Message, SubjectRequest
from mailhygiene.store.session import Store, open_store
from mailhygiene.subjects import (
    FoundMessage,
    ServerFor,
    export,
    find,
    list_requests,
    plan_erasure,
)
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

pytestmark = pytest.mark.dovecot

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OLD = datetime(2025, 1, 10, 9, tzinfo=UTC)  # past the 180-day default at NOW
RECENT = datetime(2026, 5, 20, 9, tzinfo=UTC)
ANNA = "anna.svensson@example.se"
SUPPORT = "support@promix.example"

RULES = """\
version = 1
timezone = "Europe/Stockholm"
[retention]
default = "180d"
[cases]
keep_after_close = "90d"
[purge]
action = "move"
quarantine_folder = "Quarantine"
quarantine_grace = "30d"
auto_approve_limit = 1000
[[rules]]
name = "bookkeeping"
description = "Invoices and receipts"
source = "bokföringslagen 7 kap. 2 §"
keep = "7y"
anchor = "end_of_year"
[rules.match]
subject = 'faktur|kvitto'
[[rules]]
name = "newsletters"
description = "Mailing lists"
source = "PROMIX policy: kept only as long as needed"
keep = "30d"
[rules.match]
header = { name = "list-id", pattern = "." }
"""

PDF = b"%PDF-1.4\n% skadebild\n" + bytes(range(256)) * 4


Spec = tuple[str, bytes, datetime]


def _mail(
    mid: str,
    subject: str,
    from_: str,
    to: str = SUPPORT,
    *,
    cc: str = "",
    reply_to: str = "",
    body: str = "Hej!\n",
    when: datetime = RECENT,
) -> Spec:
    headers = [(name, value) for name, value in (("Cc", cc), ("Reply-To", reply_to)) if value]
    raw = message_bytes(
        subject=subject,
        from_=from_,
        to=to,
        date=when,
        message_id=f"<{mid}@example.se>",
        headers=headers,
        body=body,
    )
    return mid, raw, when


def _with_attachment(mid: str, when: datetime) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Anna Svensson <{ANNA}>"
    msg["To"] = SUPPORT
    msg["Subject"] = "Bilder på skadan"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{mid}@example.se>"
    msg.set_content("Se bifogad fil.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="skada åäö.pdf")
    return msg.as_bytes(policy=email.policy.SMTP)


# Anna's messages and what must happen to them on erasure.
ERASED = {"a1", "a5", "s1", "s2", "ar1"}
KEPT_FOR_ANNA = {"a2": "rule", "c1": "case_open", "c2": "case_open", "h1": "hold"}
OTHERS = {"a3", "a4", "a6", "a7", "ar2"}

# fmt: off
MESSAGES: dict[str, list[Spec]] = {
    "INBOX": [
        _mail("a1", "Fråga <b>om</b> leverans & pris", "Anna Svensson <Anna.Svensson@Example.SE>"),
        _mail("a2", "Faktura 1234", "Anna Svénsson <anna.svensson@example.se>", when=OLD),
        _mail("a3", "Kampanj", "shop@example.se", cc="anna.svensson+shop@example.se"),
        _mail("a4", "Hej Hanna", "other@example.se", to="hanna.svensson@example.se"),
        _mail("a5", "Beställning", "noreply@butik.example",
              reply_to=f"=?utf-8?q?Anna?= <{ANNA.upper()}>"),
        _mail("a6", "Anna Svensson ringde", "bertil@promix.example"),
        _mail("a7", "Kundnotering", "carl@promix.example",
              body="Kunden har personnummer 19800101-1234.\n"),
        _mail("c1", "Reklamation REK-2026-0007: trasig lampa", f"Anna <{ANNA}>", when=OLD),
        _mail("h1", "Avtal", f"Anna <{ANNA}>", when=OLD),
    ],
    "Sent": [
        _mail("s1", "SV: Fråga om leverans", SUPPORT, to=f'"Svensson, Anna" <{ANNA}>'),
        _mail("s2", '=HYPERLINK("http://evil.example")', SUPPORT, to=ANNA, when=OLD),
        _mail("c2", "SV: Reklamation REK-2026-0007", SUPPORT, to=ANNA, when=OLD),
    ],
    "Archive": [
        ("ar1", _with_attachment("ar1", OLD), OLD),
        _mail("ar2", "Offert", "kund@foretag.example", when=OLD),
    ],
}
# fmt: on


@dataclass
class World:
    account: ImapAccount
    settings: AccountSettings
    store: Store
    policy: Policy

    def server(self) -> ImapMailServer:
        return ImapMailServer(self.settings, self.account.password)

    def server_for(self) -> ServerFor:
        return lambda _name: self.server()

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.account.host, self.account.port)
        conn.login(self.account.username, self.account.password)
        return conn

    def sync(self, now: datetime = NOW) -> None:
        request = SyncRequest(
            account=self.settings.name, host=self.settings.host, username=self.settings.username
        )
        with self.server() as server:
            sync_account(self.store, server, request, now=now)

    def on_server(self, folder: str) -> dict[str, bytes]:
        """Message-ID local part → whole message, as the server has it now."""
        conn = self.imap()
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        found: dict[str, bytes] = {}
        if typ == "OK":
            _typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"Message-ID: <([^@>]+)@", item[1])
                    if match:
                        found[match.group(1).decode()] = item[1]
        conn.logout()
        return found

    def indexed(self) -> dict[str, str]:
        """Message-ID local part → folder, as the index has it now."""
        with self.store.transaction() as session:
            rows = session.execute(
                select(Message.message_id, Folder.name).join(Folder, Folder.id == Message.folder_id)
            ).all()
        return {mid.split("@")[0]: folder for mid, folder in rows}


def _link(world: World) -> None:
    """c1/c2 are one thread linked to an open case; h1's thread is under a legal hold."""
    with world.store.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.message_id.in_(["c1@example.se", "c2@example.se"]))
            .values(thread_id="T-case")
        )
        session.execute(
            update(Message).where(Message.message_id == "h1@example.se").values(thread_id="T-held")
        )
        case = Case(
            ref="REK-2026-0007",
            title="trasig lampa",
            status="open",
            created_how="manual",
            opened_at=OLD,
            opened_by="support",
        )
        session.add(case)
        session.flush()
        session.add(
            CaseThread(
                case_id=case.id,
                thread_id="T-case",
                how="manual",
                linked_at=OLD,
                linked_by="support",
                note="",
            )
        )
    place_hold(
        world.store,
        name="tvist-anna",
        query="thread:T-held",
        reason="dispute with the customer",
        actor="admin",
        now=NOW - timedelta(days=1),
    )


@pytest.fixture
def world(mailbox: ImapAccount, store: Store, tmp_path: Path) -> World:
    settings = AccountSettings(
        name="support",
        host=mailbox.host,
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password=PasswordSource(env="UNUSED"),
    )
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    w = World(mailbox, settings, store, load_rules(rules))
    for folder, items in MESSAGES.items():
        append_messages(
            mailbox.host,
            mailbox.port,
            mailbox.username,
            mailbox.password,
            folder,
            [(raw, (), when) for _mid, raw, when in items],
        )
    w.sync()
    _link(w)
    return w


def _ids(messages: Sequence[FoundMessage]) -> set[str]:
    return {m.message_id.split("@")[0] for m in messages}


# ---------------------------------------------------------------------------- find


def test_find_matches_every_header_form_and_nothing_else(world: World) -> None:
    result = find(world.store, world.policy, " <ANNA.Svensson@example.SE> ", actor="mia", now=NOW)
    assert _ids(result.messages) == ERASED | set(KEPT_FOR_ANNA)
    by_id = {m.message_id.split("@")[0]: m for m in result.messages}
    assert by_id["a1"].matched == ("from",)  # display name + mixed case
    assert by_id["a2"].matched == ("from",)  # RFC 2047 encoded display name
    assert by_id["a5"].matched == ("reply-to",)
    assert by_id["s1"].matched == ("to",)  # quoted "Svensson, Anna"
    assert {m.folder for m in result.messages} == {"INBOX", "Sent", "Archive"}
    # what keeps each one, or when it goes
    assert by_id["c1"].reasons[0].kind.value == "case_open"
    assert by_id["h1"].reasons[0].kind.value == "hold"
    assert by_id["a2"].reasons[0].name == "bookkeeping"
    assert by_id["a2"].purgeable_from == datetime(2032, 12, 31, 23, tzinfo=UTC)
    assert by_id["s2"].action == "purge"
    assert by_id["a1"].action == "keep"
    assert by_id["a1"].purgeable_from is not None
    assert "bokföringslagen" in by_id["a2"].retention
    assert "tvist-anna" not in by_id["h1"].retention  # hold names are internal
    with world.store.transaction() as session:
        request = session.scalars(select(SubjectRequest)).one()
    assert (request.kind, request.status, request.found_count) == ("find", "done", 9)
    assert request.email == ANNA
    assert request.due_at == datetime(2026, 7, 1, 12, tzinfo=UTC)


def test_plus_addressing_is_matched_only_when_asked(world: World) -> None:
    without = find(world.store, world.policy, "anna.svensson+x@example.se", actor="mia", now=NOW)
    assert _ids(without.messages) == set()
    plain = find(world.store, world.policy, ANNA, actor="mia", now=NOW, plus_addressing=True)
    assert "a3" in _ids(plain.messages)
    tagged = find(
        world.store,
        world.policy,
        "anna.svensson+x@example.se",
        actor="mia",
        now=NOW,
        plus_addressing=True,
    )
    assert _ids(tagged.messages) == _ids(plain.messages)
    assert {m.message_id.split("@")[0]: m.matched for m in tagged.messages}["a3"] == ("cc",)


def test_also_terms_search_subjects_and_the_server_text(world: World) -> None:
    local = find(
        world.store,
        world.policy,
        ANNA,
        actor="mia",
        now=NOW,
        also=["anna svensson", "19800101-1234"],
    )
    assert _ids(local.messages) == ERASED | set(KEPT_FOR_ANNA) | {"a6"}
    remote = find(
        world.store,
        world.policy,
        ANNA,
        actor="mia",
        now=NOW,
        also=["19800101-1234", "Svénsson"],
        server_for=world.server_for(),
    )
    found = {m.message_id.split("@")[0]: m.matched for m in remote.messages}
    assert found["a7"] == ('text contains "19800101-1234" (server search)',)
    assert 'text contains "Svénsson" (server search)' in found["a2"]  # a literal, UTF-8
    assert "a6" not in found
    assert not remote.warnings


def test_search_text_refuses_line_breaks_and_quotes_safely(world: World) -> None:
    with world.server() as server:
        server.select("INBOX")
        with pytest.raises(InputError):
            server.search_text("x\r\nA1 DELETE INBOX")
        assert server.search_text('"quoted" \\ text') == []
        assert len(server.search_text("personnummer")) == 1
    with pytest.raises(InputError):
        find(world.store, world.policy, ANNA, actor="mia", now=NOW, also=["a\nb"])
    with pytest.raises(InputError):
        find(world.store, world.policy, "not-an-address", actor="mia", now=NOW)


# ---------------------------------------------------------------------------- export


def test_export_writes_exactly_her_mail_byte_for_byte(world: World, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export(
        world.store,
        world.policy,
        ANNA,
        out,
        server_for=world.server_for(),
        actor="admin",
        now=NOW,
        request_ref="B-17",
    )
    assert len(result.exported) == 9
    assert not result.skipped
    server = {**world.on_server("INBOX"), **world.on_server("Sent"), **world.on_server("Archive")}
    files = sorted((out / "messages").iterdir())
    assert len(files) == 9
    seen = set()
    for path in files:
        raw = path.read_bytes()
        parsed = mailparser.parse_from_bytes(raw)
        mid = parsed.message_id.strip("<>").split("@")[0]
        seen.add(mid)
        assert raw == server[mid], mid  # the server's bytes, unchanged
        assert path.stat().st_mode & 0o077 == 0
    assert seen == ERASED | set(KEPT_FOR_ANNA)  # nothing about other people
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    entries = {Path(m["file"]).name: m for m in index["messages"]}
    assert len(entries) == 9
    assert index["request_ref"] == "B-17"
    archive = next(m for m in index["messages"] if m["folder"] == "Archive")
    assert archive["attachments"] == ["skada åäö.pdf"]
    assert archive["appears_as"] == ["from"]
    with (out / "index.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9
    assert any(r["subject"].startswith("'=HYPERLINK") for r in rows)  # no formula injection
    assert any("bokföringslagen" in r["kept_because"] for r in rows)
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert "<b>om</b>" not in page
    assert "&lt;b&gt;om&lt;/b&gt; leverans &amp; pris" in page
    assert "B-17" in page
    assert "REK-2026-0007" in page
    assert "tvist-anna" not in page
    # BODY.PEEK: exporting marks nothing as read
    conn = world.imap()
    conn.select("INBOX", readonly=True)
    _typ, flags = conn.uid("FETCH", "1:*", "(FLAGS)")
    conn.logout()
    assert not [f for f in flags if b"\\Seen" in f]
    with world.store.transaction() as session:
        request = session.scalars(select(SubjectRequest)).one()
    assert (request.kind, request.status, request.exported_to) == ("export", "done", str(out))
    events = {e.tag: e for e in audit.query(world.store, tag="subject")}
    assert set(events) == {"subject:request", "subject:export"}
    assert events["subject:export"].subject == result.request
    assert events["subject:export"].data["exported"] == 9
    assert (
        events["subject:export"].data["index_sha256"]
        == hashlib.sha256((out / "index.json").read_bytes()).hexdigest()
    )
    assert all(ANNA not in json.dumps(e.data) for e in events.values())
    with pytest.raises(InputError, match="not an empty directory"):
        export(
            world.store,
            world.policy,
            ANNA,
            out,
            server_for=world.server_for(),
            actor="admin",
            now=NOW,
        )


def test_export_refuses_a_folder_whose_uids_changed_meaning(world: World, tmp_path: Path) -> None:
    conn = world.imap()  # recreate Archive: same mail, new UIDVALIDITY, index not synced
    conn.rename("Archive", "Archive-old")
    conn.create("Archive")
    conn.select("Archive-old")
    conn.uid("MOVE", "1:*", "Archive")
    conn.logout()
    result = export(
        world.store,
        world.policy,
        ANNA,
        tmp_path / "x",
        server_for=world.server_for(),
        actor="admin",
        now=NOW,
    )
    assert len(result.exported) == 8
    assert result.skipped == {"folder changed or gone on the server since the last sync": 1}
    assert any("UIDVALIDITY" in w for w in result.warnings)
    views = list_requests(world.store, now=NOW, actor="admin", zone=world.policy.zone)
    assert [v.kind for v in views] == ["export"]
    assert "incomplete" in views[0].stage


# ---------------------------------------------------------------------------- erasure


def test_erasure_plan_approve_execute_keeps_held_case_and_bookkeeping_mail(world: World) -> None:
    result = plan_erasure(
        world.store, world.policy, ANNA, request_ref="B-17", actor="admin", now=NOW
    )
    assert result.to_erase == len(ERASED)
    assert len(result.plans) == 1
    assert result.by_folder == {"INBOX": 2, "Sent": 2, "Archive": 1}
    kept = {(g.kind, g.name): g.messages for g in result.kept}
    assert kept == {
        ("case_open", "REK-2026-0007"): 2,
        ("hold", "tvist-anna"): 1,
        ("rule", "bookkeeping"): 1,
    }
    letter = result.letter
    assert "B-17" in letter
    assert "Erased: 5 message(s)" in letter
    assert "REK-2026-0007" in letter
    assert "bokföringslagen" in letter
    assert "legal hold" in letter
    assert "tvist-anna" not in letter
    ref = result.plans[0].ref
    assert ref is not None
    # four eyes: whoever planned the erasure cannot approve it
    with pytest.raises(SafetyRefusal, match="another manager"):
        approve_plan(world.store, ref, world.policy, actor="admin", now=NOW)
    approve_plan(world.store, ref, world.policy, actor="mia", now=NOW)
    with world.server() as server:
        report = execute_plan(world.store, server, world.policy, ref, actor="mia", now=NOW)
    assert report.status == "done"
    assert report.done == 5
    assert not report.skipped
    everything = {
        **world.on_server("INBOX"),
        **world.on_server("Sent"),
        **world.on_server("Archive"),
    }
    assert set(everything) == set(KEPT_FOR_ANNA) | OTHERS
    assert set(world.on_server("Quarantine")) == ERASED
    indexed = world.indexed()
    assert not ERASED & set(indexed)
    assert set(KEPT_FOR_ANNA) | OTHERS <= set(indexed)
    [view] = list_requests(
        world.store, now=NOW, actor="admin", zone=world.policy.zone, include_closed=True
    )
    assert view.status == "done"
    assert view.plans == (ref,)
    tags = [e.tag for e in reversed(audit.query(world.store))]
    assert tags == [
        "hold:place",
        "subject:request",
        "plan:create",
        "subject:erase",
        "plan:approve",
        "purge:execute",
        "purge:batch",
        "purge:batch",
        "purge:batch",
        "purge:execute",
        "subject:erase",
    ]
    erase_events = audit.query(world.store, tag="subject:erase")
    assert {e.data["phase"] for e in erase_events} == {"planned", "done"}
    assert all(ANNA not in json.dumps(e.data) for e in audit.query(world.store))
    # asked again meanwhile: what was erased waits in quarantine, the rest is still kept
    world.sync()
    again = plan_erasure(
        world.store, world.policy, ANNA, request_ref="B-17b", actor="admin", now=NOW
    )
    assert (again.to_erase, again.in_quarantine, again.plans) == (0, 5, [])
    assert again.quarantine_until == NOW + timedelta(days=30)
    assert "5 message(s) had already been removed" in again.letter
    assert "deleted for good on 2026-07-01" in again.letter
    # after the grace period, the quarantine lets erased (young) mail go for good
    world.sync(NOW + timedelta(days=31))
    with world.server() as server:
        done = expunge_due(
            world.store,
            server,
            world.policy,
            account="support",
            actor="scheduler",
            now=NOW + timedelta(days=31),
        )
    assert done.expunged == 5
    assert not any(done.skipped.values())
    assert world.on_server("Quarantine") == {}


def test_erasure_execution_rechecks_holds_and_cases(world: World) -> None:
    result = plan_erasure(
        world.store, world.policy, ANNA, request_ref="B-18", actor="admin", now=NOW
    )
    ref = result.plans[0].ref
    assert ref is not None
    approve_plan(world.store, ref, world.policy, actor="mia", now=NOW)
    place_hold(
        world.store,
        name="late-hold",
        query='subject:"SV: Fråga"',
        reason="claim",
        actor="admin",
        now=NOW,
    )
    with world.store.transaction() as session:  # a1 joins the open case after the plan
        session.execute(
            update(Message).where(Message.message_id == "a1@example.se").values(thread_id="T-case")
        )
    with world.server() as server:
        report = execute_plan(world.store, server, world.policy, ref, actor="mia", now=NOW)
    assert report.done == 3
    assert report.skipped == {"kept now: hold late-hold": 1, "kept now: case_open REK-2026-0007": 1}
    assert {"a1"} <= set(world.on_server("INBOX"))
    assert "s1" in world.on_server("Sent")
    assert (
        list_requests(world.store, now=NOW, actor="admin", zone=world.policy.zone) == []
    )  # answered
    [view] = list_requests(
        world.store, now=NOW, actor="admin", zone=world.policy.zone, include_closed=True
    )
    assert view.stage == (
        "erased 3 message(s); not erased at execution: 1 kept now: case_open REK-2026-0007, "
        "1 kept now: hold late-hold"
    )


def test_requests_are_listed_with_deadlines_and_a_repeat_supersedes(world: World) -> None:
    first = plan_erasure(
        world.store, world.policy, ANNA, request_ref="B-19", actor="admin", now=NOW
    )
    later = NOW + timedelta(days=10)
    second = plan_erasure(
        world.store, world.policy, ANNA, request_ref="B-19", actor="admin", now=later
    )
    assert second.superseded == [first.request]
    assert second.due_at == first.due_at == datetime(2026, 7, 1, 12, tzinfo=UTC)
    views = list_requests(world.store, now=later, actor="admin", zone=world.policy.zone)
    assert [v.ref for v in views] == [second.request]
    assert views[0].days_left == 20
    assert "awaits a second person" in views[0].stage
    everything = list_requests(
        world.store, now=later, actor="admin", zone=world.policy.zone, include_closed=True
    )
    assert {v.status for v in everything} == {"open", "superseded"}
    with pytest.raises(InputError, match="request-ref"):
        plan_erasure(world.store, world.policy, ANNA, request_ref=" ", actor="admin", now=NOW)


def test_nothing_to_erase_closes_the_request_with_a_letter(world: World) -> None:
    result = plan_erasure(
        world.store, world.policy, "nobody@example.se", request_ref="B-20", actor="admin", now=NOW
    )
    assert result.plans == []
    assert result.found == 0
    assert "We found no such email." in result.letter
    assert list_requests(world.store, now=NOW, actor="admin", zone=world.policy.zone) == []


# ---------------------------------------------------------------------------- streaming


@pytest.mark.slow
def test_export_of_5000_messages_streams_to_disk(
    dovecot: ThrowawayDovecot, mailbox: ImapAccount, tmp_path: Path
) -> None:
    settings = AccountSettings(
        name="support",
        host=mailbox.host,
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password=PasswordSource(env="UNUSED"),
    )
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}")
    policy = Policy(source_hash="p")
    writer = FolderWriter(dovecot, mailbox.username, "INBOX")
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8 + "\n") * 100
    for i in range(5000):
        _mid, raw, _when = _mail(f"bulk{i}", f"Order {i}", f"Anna <{ANNA}>", body=body)
        writer.write(raw, RECENT)
    dovecot.rescan(mailbox.username)
    w = World(mailbox, settings, store, policy)
    w.sync()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        result = export(
            store, policy, ANNA, tmp_path / "out", server_for=w.server_for(), actor="admin", now=NOW
        )
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    store.close()
    assert len(result.exported) == 5000
    assert result.total_bytes > 5000 * 45_000
    # 230 MB of mail went to disk one message at a time
    # ~2.5 KB of index entry per message stays in memory; the mail itself never does
    assert peak < 25 * 1024 * 1024, f"peak growth {peak / 1e6:.1f} MB"


# ---------------------------------------------------------------------- restriction


def _subjects_visible(world: World, query: str, *, include_restricted: bool) -> set[str]:
    page = reports.search(
        world.store,
        query,
        zone=world.policy.zone,
        account=None,
        limit=100,
        include_restricted=include_restricted,
    )
    return {m["message_id"].split("@")[0] for m in page["messages"]}


def test_a_restriction_hides_exactly_her_mail_and_the_plus_form_widens_it(world: World) -> None:
    everything = _subjects_visible(world, "after:2000-01-01", include_restricted=True)
    hers = ERASED | set(KEPT_FOR_ANNA)
    view = restrictions.restrict(
        world.store, ANNA, basis="bokföringslagen", request_ref="B-1", actor="admin", now=NOW
    )
    assert view.messages == len(hers)
    visible = _subjects_visible(world, "after:2000-01-01", include_restricted=False)
    assert visible == everything - hers
    assert {"a3", "a4"} <= visible  # anna+shop@ without plus-addressing; hanna@ never
    assert _subjects_visible(world, "after:2000-01-01", include_restricted=True) == everything
    # what holds, erasure and purge planning see is unchanged: they never hide
    result = find(world.store, world.policy, ANNA, actor="mia", now=NOW)
    assert _ids(result.messages) == hers

    restrictions.lift(world.store, view.ref, reason="settled", actor="admin", now=NOW)
    wider = restrictions.restrict(
        world.store,
        ANNA,
        basis="art. 18(1)(a)",
        request_ref="B-2",
        actor="admin",
        now=NOW,
        plus_addressing=True,
    )
    assert wider.messages == len(hers) + 1  # anna+shop@
    assert "a3" not in _subjects_visible(world, "after:2000-01-01", include_restricted=False)
