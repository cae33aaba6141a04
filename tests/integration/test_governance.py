"""Policy governance against a real Dovecot and SQLite (one store check on PostgreSQL too):
a simulation equals the plan a real run makes afterwards; the extend-only lock refuses
weakening and planning under unadopted rules; releasing a hold purges nothing by itself;
every message deleted for good leaves a tombstone without personal data."""

from __future__ import annotations

import csv
import hashlib
import imaplib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from mailhygiene.audit import log as audit
from mailhygiene.cli.main import cli
from mailhygiene.config.rules import parse_rules
from mailhygiene.config.settings import AccountSettings, PasswordSource
from mailhygiene.devtools import ImapAccount
from mailhygiene.devtools.mailbox import append_messages, message_bytes
from mailhygiene.disposition import (
    TombstoneView,
    disposition_report,
    purge_expired_tombstones,
    render_disposition,
    tombstone_cutoff,
)
from mailhygiene.errors import SafetyRefusal
from mailhygiene.governance import admit_for_planning, adopt_policy, diff_versions, policy_history
from mailhygiene.holds import place_hold, release_hold
from mailhygiene.imap.client import ImapMailServer
from mailhygiene.index import SyncRequest, sync_account
from mailhygiene.policy import Duration, Policy
from mailhygiene.purge.approve import approve_plan
from mailhygiene.purge.execute import execute_plan
from mailhygiene.purge.plan import plan_purge, stored_summary
from mailhygiene.purge.quarantine import expunge_due, list_quarantine, restore
from mailhygiene.scheduled import scheduled_run
from mailhygiene.simulation import preview_hold_release, simulate_policy
from mailhygiene.store import governance_queries, purge_queries
from mailhygiene.store.models import (
    Case,
    CaseThread,
    Message,
    Plan,
    PlanItem,
    PolicyVersion,
    Tombstone,
)
from mailhygiene.store.session import Store, open_store
from tests.store_fixtures import store_fixture, store_target_fixture  # noqa: F401

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OLD = datetime(2025, 1, 10, 9, tzinfo=UTC)  # 507 days before NOW
MID = datetime(2026, 1, 15, 9, tzinfo=UTC)  # 137 days before NOW
TWO_MONTHS = NOW - timedelta(days=60)
RECENT = datetime(2026, 5, 20, 9, tzinfo=UTC)

RULES_V1 = """version = 1
[retention]
default = "180d"
[policy]
lock = "extend-only"
[[rules]]
name = "bookkeeping"
keep = "7y"
anchor = "end_of_year"
[rules.match]
subject = "faktura"
[[rules]]
name = "newsletters"
keep = "30d"
[rules.match]
header = { name = "list-id", pattern = "." }
"""
# Shorter default, no newsletter rule: more plain mail goes, recent newsletters stay.
RULES_V2 = RULES_V1.replace('default = "180d"', 'default = "120d"').split(
    '[[rules]]\nname = "newsletters"'
)[0]
# Only extends v1: longer default and bookkeeping, a new long rule.
RULES_LONGER = (
    RULES_V1.replace('default = "180d"', 'default = "1y"').replace('keep = "7y"', 'keep = "10y"')
    + '[[rules]]\nname = "hr"\nkeep = "2y"\n[rules.match]\nfolder = "HR*"\n'
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class World:
    """One mailbox on Dovecot with cases, a hold candidate, bookkeeping mail and lists."""

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

    def deliver(
        self,
        folder: str,
        prefix: str,
        when: datetime,
        count: int,
        *,
        subject: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        append_messages(
            self.account.host,
            self.account.port,
            self.account.username,
            self.account.password,
            folder,
            [
                (
                    message_bytes(
                        subject=f"{subject or prefix} {i}",
                        from_="kund@example.se",
                        message_id=f"<{prefix}-{i}@example.se>",
                        date=when,
                        headers=headers,
                    ),
                    (),
                    when,
                )
                for i in range(count)
            ],
        )

    def sync(self, now: datetime = NOW) -> None:
        request = SyncRequest(
            account=self.settings.name, host=self.settings.host, username=self.settings.username
        )
        with self.server() as server:
            sync_account(self.store, server, request, now=now)

    def plan(self, policy: Policy | None = None, now: datetime = NOW) -> str | None:
        return plan_purge(
            self.store, policy or self.policy, account="support", now=now, actor="planner"
        ).ref

    def approve_and_execute(self, ref: str, policy: Policy | None = None) -> int:
        approve_plan(self.store, ref, policy or self.policy, actor="manager", now=NOW)
        with self.server() as server:
            report = execute_plan(
                self.store, server, policy or self.policy, ref, actor="manager", now=NOW
            )
        return report.done

    def folder_message_ids(self, folder: str) -> set[str]:
        conn = self.imap()
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            conn.logout()
            return set()
        _typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        conn.logout()
        found = set()
        for item in data:
            if isinstance(item, tuple):
                match = re.search(rb"<([^>]+)>", item[1])
                if match:
                    found.add(match.group(1).decode())
        return found

    def link_open_case(self, message_id: str) -> None:
        with self.store.transaction() as session:
            session.execute(
                update(Message).where(Message.message_id == message_id).values(thread_id="t-1")
            )
            case = Case(
                ref="REK-2025-0042",
                title="t",
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
                    thread_id="t-1",
                    how="manual",
                    linked_at=OLD,
                    linked_by="support",
                    note="",
                )
            )

    def items(self, ref: str) -> list[Any]:
        """The plan's items wherever they are (members, or the journal once executing)."""
        with self.store.transaction() as session:
            plan_id = session.scalar(select(Plan.id).where(Plan.ref == ref))
            assert plan_id is not None
            return list(session.execute(select(purge_queries.plan_entries(plan_id))))

    def tombstones(self) -> list[Tombstone]:
        with self.store.transaction() as session:
            return list(session.scalars(select(Tombstone).order_by(Tombstone.id)))

    def plan_count(self) -> int:
        with self.store.transaction() as session:
            return session.scalar(select(func.count()).select_from(Plan)) or 0


def _settings(mailbox: ImapAccount) -> AccountSettings:
    return AccountSettings(
        name="support",
        host=mailbox.host,
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password=PasswordSource(env="UNUSED"),
    )


@pytest.fixture
def world(mailbox: ImapAccount, tmp_path: Path) -> Iterator[World]:
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}")
    w = World(mailbox, _settings(mailbox), store, parse_rules(RULES_V1, source="rules.toml"))
    w.deliver("INBOX", "old", OLD, 3)
    w.deliver("INBOX", "mid", MID, 3)
    w.deliver("INBOX", "new", RECENT, 2)
    w.deliver("INBOX", "inv", OLD, 2, subject="Faktura")
    news = (("List-Id", "<news.example.se>"),)
    w.deliver("INBOX", "news-mid", MID, 2, headers=news)
    w.deliver("INBOX", "news-2m", TWO_MONTHS, 2, headers=news)
    w.deliver("Arkiv", "arch", MID, 2)
    w.sync()
    w.link_open_case("old-0@example.se")
    place_hold(
        w.store, name="tvist", query='subject:"old 1"', reason="court case", actor="admin", now=OLD
    )
    yield w
    store.close()


# -- simulation ----------------------------------------------------------------------------


def test_simulation_equals_the_plan_a_real_run_makes_afterwards(world: World) -> None:
    v2 = parse_rules(RULES_V2, source="rules-v2.toml")
    simulation = simulate_policy(
        world.store, world.policy, v2, account="support", now=NOW, actor="alice", samples=100
    )
    newly = {(s.folder, s.reason): s.messages for s in simulation.newly_purged}
    assert newly == {("Arkiv", "default:default"): 2, ("INBOX", "default:default"): 3}
    assert {(s.folder, s.reason): s.messages for s in simulation.no_longer_purged} == {
        ("INBOX", "rule:newsletters"): 2
    }
    assert simulation.reason_changed == 2  # mid newsletters: now by the default
    assert [c.subject for c in simulation.lock_objections] == []  # nothing adopted yet
    assert {c.subject for c in simulation.changes} == {"default retention", "rule 'newsletters'"}
    assert world.plan_count() == 0  # a simulation stores nothing

    for policy, expected in ((world.policy, simulation.current), (v2, simulation.candidate)):
        ref = world.plan(policy)
        assert ref is not None
        real = stored_summary(world.store, ref)
        assert real.content_hash == expected.content_hash  # the same messages
        assert real.by_reason == expected.by_reason  # for the same reasons
        assert real.by_folder == expected.by_folder
        assert real.item_count == expected.item_count

    reasons = {i.message_id: f"{i.reason_kind}:{i.reason_name}" for i in world.items(ref)}
    samples = [m for shift in simulation.newly_purged for m in shift.samples]
    assert len(samples) == 5
    assert all(reasons[m.message_id] == m.reason for m in samples)
    # Cases, holds and bookkeeping keep their mail in both.
    assert not {"old-0@example.se", "old-1@example.se", "inv-0@example.se"} & set(reasons)


# -- the extend-only lock ------------------------------------------------------------------


def test_the_lock_refuses_weakening_and_unadopted_rules_but_accepts_extensions(
    world: World,
) -> None:
    v1 = world.policy
    adoption = adopt_policy(world.store, v1, RULES_V1, actor="alice", now=NOW)
    assert adoption.version.lock == "extend-only"
    assert adoption.previous is None
    assert world.plan(v1) is not None

    weaker = parse_rules(RULES_V2, source="rules.toml")
    with pytest.raises(SafetyRefusal, match="not the adopted policy"):
        world.plan(weaker)
    with pytest.raises(SafetyRefusal) as refused:
        adopt_policy(world.store, weaker, RULES_V2, actor="alice", now=NOW)
    message = str(refused.value)
    assert "would weaken it in 2 way(s)" in message
    assert "default retention: 180 days → 120 days" in message
    assert "rule 'newsletters' removed" in message

    longer = parse_rules(RULES_LONGER, source="rules.toml")
    with pytest.raises(SafetyRefusal, match="not the adopted policy"):
        world.plan(longer)  # editing rules.toml does not bypass the lock
    adopted = adopt_policy(world.store, longer, RULES_LONGER, actor="alice", now=NOW)
    assert {c.effect.value for c in adopted.changes} == {"extends"}
    world.plan(longer)  # planning is allowed again
    with pytest.raises(SafetyRefusal, match="not the adopted policy"):
        world.plan(v1)  # going back is a weakening too
    with pytest.raises(SafetyRefusal, match="default retention: 1 year → 180 days"):
        adopt_policy(world.store, v1, RULES_V1, actor="alice", now=NOW)

    unlocked_text = RULES_LONGER.replace('lock = "extend-only"', 'lock = "none"')
    unlocked = parse_rules(unlocked_text, source="rules.toml")
    with pytest.raises(SafetyRefusal, match="removes the extend-only lock"):
        adopt_policy(world.store, unlocked, unlocked_text, actor="alice", now=NOW)

    history = policy_history(world.store)
    assert [(v.adopted, v.in_force) for v in history] == [(True, False), (True, True)]
    assert [e.subject for e in audit.query(world.store, tag="rules:adopt")] == [
        f"policy version {history[1].id}",
        f"policy version {history[0].id}",
    ]
    diff = diff_versions(world.store, str(history[0].id), "adopted")
    assert next(str(c) for c in diff.changes) == "default retention: 180 days → 1 year [extends]"


def test_without_a_lock_anything_is_adopted_and_plans_run_under_any_rules(world: World) -> None:
    unlocked_text = RULES_V1.replace('lock = "extend-only"', 'lock = "none"')
    unlocked = parse_rules(unlocked_text, source="rules.toml")
    adopt_policy(world.store, unlocked, unlocked_text, actor="alice", now=NOW)
    weaker_text = unlocked_text.replace('default = "180d"', 'default = "90d"')
    weaker = parse_rules(weaker_text, source="rules.toml")
    admit_for_planning(world.store, weaker, actor="planner", now=NOW)
    adoption = adopt_policy(world.store, weaker, weaker_text, actor="alice", now=NOW)
    assert [c.effect.value for c in adoption.changes] == ["weakens"]


# -- holds ---------------------------------------------------------------------------------


def test_hold_release_preview_and_release_purges_nothing_until_an_approved_plan(
    world: World,
) -> None:
    world.deliver("INBOX", "tvist", OLD, 2, subject="tvist")
    world.deliver("INBOX", "tvist-new", RECENT, 1, subject="tvist")
    world.deliver("INBOX", "tvist-inv", OLD, 1, subject="Faktura tvist")
    world.sync()
    with world.store.transaction() as session:  # one held message is in an open case too
        session.execute(
            update(Message)
            .where(Message.message_id == "tvist-1@example.se")
            .values(thread_id="t-1")
        )
    place_hold(
        world.store,
        name="tvist-2026",
        query="subject:tvist",
        reason="dispute",
        actor="admin",
        now=NOW,
    )
    preview = preview_hold_release(
        world.store, world.policy, name="tvist-2026", account="support", now=NOW
    )
    assert (
        preview.covered,
        preview.purgeable_now,
        preview.purgeable_later,
        preview.still_kept,
    ) == (
        4,
        1,
        2,
        1,
    )
    outcomes = {(g.outcome, g.messages) for g in preview.groups}
    assert outcomes == {
        ("purgeable at the next plan", 1),
        ("purgeable from 2026-11", 1),  # the recent one: 180 days after 20 May
        ("purgeable from 2033-01", 1),  # the invoice: bookkeeping, 7 years from end of 2025
        ("still kept: case_open REK-2025-0042", 1),
    }
    before = world.folder_message_ids("INBOX")
    release_hold(world.store, name="tvist-2026", actor="admin", now=NOW)
    assert world.folder_message_ids("INBOX") == before
    assert world.plan_count() == 0
    assert list_quarantine(world.store, account="support") == []

    ref = world.plan()
    assert ref is not None
    planned = {i.message_id for i in world.items(ref)}
    assert "tvist-0@example.se" in planned
    assert not {"tvist-1@example.se", "tvist-new-0@example.se", "tvist-inv-0@example.se"} & planned
    assert "tvist-0@example.se" in world.folder_message_ids("INBOX")  # still there: unapproved
    world.approve_and_execute(ref)
    assert "tvist-0@example.se" in world.folder_message_ids("Quarantine")
    assert "tvist-0@example.se" not in world.folder_message_ids("INBOX")


# -- tombstones ----------------------------------------------------------------------------

ADDRESSY = re.compile(r"@|kund|example|old |mid |faktura", re.IGNORECASE)


def _assert_no_personal_data(stones: list[Tombstone]) -> None:
    for stone in stones:
        for column in ("account", "folder", "rule", "approvers", "plan_ref", "policy_hash"):
            assert not ADDRESSY.search(getattr(stone, column)), (column, getattr(stone, column))
        assert re.fullmatch(r"[0-9a-f]{64}", stone.message_id_hash)


def test_direct_deletion_leaves_a_tombstone_per_message(world: World) -> None:
    text = RULES_V1.replace("[policy]", '[purge]\naction = "delete"\n[policy]')
    world.policy = parse_rules(text, source="rules.toml")
    ref = world.plan()
    assert ref is not None
    items = {i.message_id: i for i in world.items(ref)}
    done = world.approve_and_execute(ref)
    assert done == len(items) == 5
    stones = world.tombstones()
    assert len(stones) == done
    by_hash = {s.message_id_hash: s for s in stones}
    for message_id, item in items.items():
        stone = by_hash[sha256(message_id)]
        assert (stone.folder, stone.size, stone.action) == (item.folder, item.size, "deleted")
        assert stone.rule == f"{item.reason_kind}:{item.reason_name}"
        assert stone.internal_date == item.internal_date
        assert stone.date_header is not None
        assert (stone.plan_ref, stone.approvers) == (ref, "manager")
        assert stone.policy_hash == world.policy.source_hash
        assert stone.disposed_at == NOW
    _assert_no_personal_data(stones)

    rows = disposition_report(world.store, since=NOW - timedelta(days=1))
    assert len(rows) == 5
    table = list(
        csv.DictReader(
            io.StringIO(render_disposition(rows, "csv", since=NOW, until=None, generated_at=NOW))
        )
    )
    assert {r["rule"] for r in table} == {"default:default", "rule:newsletters"}
    document = json.loads(render_disposition(rows, "json", since=NOW, until=None, generated_at=NOW))
    assert document["count"] == 5
    assert document["tombstones"][0]["size"] == rows[0].size
    assert disposition_report(world.store, since=NOW + timedelta(seconds=1)) == []


def test_quarantine_expunge_leaves_tombstones_and_old_ones_are_purged_by_the_run(
    world: World,
) -> None:
    ref = world.plan()
    assert ref is not None
    moved = world.approve_and_execute(ref)
    assert world.tombstones() == []  # moved to quarantine is not yet gone
    first = list_quarantine(world.store, account="support")[0]
    with world.server() as server:
        restore(
            world.store,
            server,
            world.policy,
            account="support",
            actor="manager",
            now=NOW,
            entry_ids=[first.id],
        )
    world.sync()
    later = NOW + timedelta(days=31)
    with world.server() as server:
        report = expunge_due(
            world.store, server, world.policy, account="support", actor="scheduler", now=later
        )
    assert report.expunged == moved - 1
    stones = world.tombstones()
    assert len(stones) == moved - 1
    assert sha256(first.message_id) not in {s.message_id_hash for s in stones}
    items = {sha256(i.message_id): i for i in world.items(ref)}
    for stone in stones:
        item = items[stone.message_id_hash]
        assert (stone.action, stone.folder, stone.plan_ref) == ("moved", item.folder, ref)
        assert stone.rule == f"{item.reason_kind}:{item.reason_name}"
        assert stone.date_header is not None
        assert stone.disposed_at == later
    _assert_no_personal_data(stones)

    # Ten years on, the scheduled run deletes those tombstones and audits how many.
    decade = later + timedelta(days=3653 + 2)
    assert tombstone_cutoff(world.policy.tombstone_keep, decade) > later
    with world.server() as server:
        scheduled_run(
            world.store,
            server,
            world.policy,
            SyncRequest(
                account="support", host=world.settings.host, username=world.settings.username
            ),
            actor="scheduler",
            now=decade,
            link_cases=lambda *args: 0,
        )
    assert [s for s in world.tombstones() if s.disposed_at == later] == []
    [run] = audit.query(world.store, tag="run:scheduled")
    assert run.data["tombstones_purged"] == moved - 1


def test_the_html_report_escapes_everything() -> None:
    row = TombstoneView(
        disposed_at=NOW,
        account="support",
        action="deleted",
        folder="<script>alert(1)</script>&",
        internal_date=None,
        date_header=None,
        size=1,
        rule='rule:"x"',
        policy_hash="p",
        plan_ref="P-1",
        approvers="maja",
        message_id_hash="0" * 64,
    )
    page = render_disposition([row], "html", since=NOW, until=None, generated_at=NOW)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    formula = render_disposition(
        [TombstoneView(**{**row.__dict__, "folder": "=HYPERLINK(1)"})],
        "csv",
        since=NOW,
        until=None,
        generated_at=NOW,
    )
    assert "'=HYPERLINK(1)" in formula


# -- the same records on both back ends ----------------------------------------------------


def test_versions_lock_and_tombstones_on_each_back_end(store: Store) -> None:
    v1 = parse_rules(RULES_V1, source="rules.toml")
    admit_for_planning(store, v1, actor="planner", now=OLD)
    admit_for_planning(store, v1, actor="other", now=NOW)  # idempotent: first load kept
    [version] = policy_history(store)
    assert (version.loaded_by, version.text_known, version.adopted) == ("planner", False, False)
    adopt_policy(store, v1, RULES_V1, actor="alice", now=NOW)
    weaker = parse_rules(RULES_V2, source="rules.toml")
    with pytest.raises(SafetyRefusal):
        admit_for_planning(store, weaker, actor="planner", now=NOW)
    with store.transaction() as session:
        stored = session.scalar(select(PolicyVersion))
        assert stored is not None
        assert stored.text == RULES_V1
        assert stored.adoption_seq == 1
        plan = Plan(
            ref="P-20260601-abcdef",
            kind="purge",
            account="support",
            status="done",
            created_at=NOW,
            created_by="planner",
            planned_for=NOW,
            expires_at=NOW + timedelta(days=7),
            policy_hash=v1.source_hash,
            content_hash="c" * 64,
            item_count=1,
            total_bytes=10,
            summary="{}",
        )
        session.add(plan)
        session.flush()
        item = PlanItem(
            plan_id=plan.id,
            folder="INBOX",
            uidvalidity=1,
            uid=7,
            message_id="m-1@example.se",
            size=10,
            internal_date=OLD,
            action="delete",
            reason_kind="default",
            reason_name="default",
            reason_detail="",
        )
        session.add(item)
        session.flush()
        governance_queries.record_plan_tombstones(
            session, plan_id=plan.id, item_ids=[item.id], action="deleted", at=NOW
        )
    [row] = disposition_report(store, since=NOW, account="support")
    assert row.message_id_hash == sha256("m-1@example.se")
    assert (row.rule, row.approvers, row.internal_date) == ("default:default", "", OLD)
    with store.transaction() as session:
        keep = Duration.parse("10y")
        assert purge_expired_tombstones(session, v1, account="support", now=NOW) == 0
        end = keep.add_to(NOW)
        assert purge_expired_tombstones(session, v1, account="support", now=end) == 1
    assert disposition_report(store, since=OLD) == []


# -- the commands --------------------------------------------------------------------------


def test_the_commands(
    mailbox: ImapAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MH_PASSWORD", mailbox.password)
    config = tmp_path / "mailhygiene.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///mh.db"\n[accounts.support]\n'
        f'host = "{mailbox.host}"\nport = {mailbox.port}\nsecurity = "none"\n'
        f'username = "{mailbox.username}"\npassword_env = "MH_PASSWORD"\n',
        encoding="utf-8",
    )
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1, encoding="utf-8")
    (tmp_path / "v2.toml").write_text(RULES_V2, encoding="utf-8")

    def run(*args: str, actor: str = "alice") -> Result:
        monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
        return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="mailhygiene")

    assert run("user", "add", "alice", "--role", "admin").exit_code == 0
    assert run("user", "add", "bob", "--role", "support").exit_code == 0
    assert run("user", "add", "maja", "--role", "manager").exit_code == 0
    append_messages(
        mailbox.host,
        mailbox.port,
        mailbox.username,
        mailbox.password,
        "INBOX",
        [(message_bytes(subject="gammal", from_="a@b.se", date=OLD), (), OLD)],
    )
    assert run("sync", "--now", "2026-06-01").exit_code == 0

    refused = run("rules", "adopt", actor="maja")
    assert refused.exit_code == 3  # adoption is for admins
    adopted = run("rules", "adopt", "--now", "2026-06-01")
    assert adopted.exit_code == 0, adopted.output
    assert "as version 1; lock: extend-only" in adopted.output
    history = json.loads(run("rules", "history", "--json", actor="bob").output)
    assert [(v["id"], v["in_force"]) for v in history] == [(1, True)]

    simulated = run("rules", "simulate", str(tmp_path / "v2.toml"), "--now", "2026-06-01", "--json")
    assert simulated.exit_code == 0, simulated.output
    data = json.loads(simulated.output)
    assert data["candidate"]["item_count"] == 1
    assert [c["subject"] for c in data["lock_objections"]] == [
        "default retention",
        "rule 'newsletters'",
    ]
    text = run("rules", "simulate", str(tmp_path / "v2.toml"), "--now", "2026-06-01").output
    assert "refused by the extend-only lock" in text

    rules.write_text(RULES_V2, encoding="utf-8")
    diff = run("rules", "diff", "adopted")
    assert "! default retention: 180 days → 120 days" in diff.output
    for args in (("rules", "adopt"), ("purge", "plan", "--now", "2026-06-01")):
        result = run(*args)
        assert result.exit_code == 3, (args, result.output)
    assert "would weaken it in 2 way(s)" in run("rules", "adopt").stderr
    rules.write_text(RULES_V1, encoding="utf-8")
    planned = run("purge", "plan", "--now", "2026-06-01", "--json", actor="maja")
    assert planned.exit_code == 0, planned.output

    assert run("hold", "place", "h1", "--query", "subject:gammal", "--reason", "r").exit_code == 0
    preview = run("hold", "release", "h1", "--preview", "--now", "2026-06-01", "--json")
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.output)["covered"] == 1
    assert "purgeable at the next plan" in run("hold", "release", "h1", "--preview").output
    assert run("hold", "list", "--json").output.count('"released_at": null') == 1

    report = run("report", "disposition", "--since", "2000-01-01", "--format", "html", actor="maja")
    assert report.exit_code == 0
    assert report.output.startswith("<!DOCTYPE html>")
    assert run("report", "disposition", "--since", "2000-01-01", actor="bob").exit_code == 3
