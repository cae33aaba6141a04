"""``subject find|export|erase|requests|restrict|unrestrict|restrictions`` through the CLI
against a real Dovecot: roles, human and ``--json`` output, the erasure going through
``purge approve``/``execute`` by a second person, restriction hiding a person's mail from
ordinary staff (GDPR art. 18 / 17(3)), one-line errors and documented examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailhygiene.cli.auth import permission_of
from mailhygiene.cli.main import cli
from mailhygiene.cli.subject_commands import subject
from mailhygiene.devtools import ImapAccount
from mailhygiene.devtools.mailbox import append_messages, message_bytes
from mailhygiene.roles import Permission

pytestmark = pytest.mark.dovecot

Run = Callable[..., Result]
NOW = "2026-03-02T12:00:00Z"
OLD = datetime(2025, 6, 2, 9, tzinfo=UTC)
RECENT = datetime(2026, 2, 20, 9, tzinfo=UTC)
ANNA = "anna.svensson@example.se"
RULES = """\
version = 1
[retention]
default = "180d"
[cases]
pattern = 'REK-\\d{4}-\\d{4}'
keep_after_close = "90d"
[[rules]]
name = "bookkeeping"
description = "Invoices"
source = "bokföringslagen 7 kap. 2 §"
keep = "7y"
anchor = "end_of_year"
[rules.match]
subject = 'faktur'
"""


@pytest.fixture
def config(tmp_path: Path, mailbox: ImapAccount, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MH_TEST_PASSWORD", mailbox.password)
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    path = tmp_path / "mailhygiene.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///mh.db"\n'
        "[accounts.support]\n"
        f'host = "{mailbox.host}"\nport = {mailbox.port}\nsecurity = "none"\n'
        f'username = "{mailbox.username}"\npassword_env = "MH_TEST_PASSWORD"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def run(config: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(actor, *args)``: alice is admin, mia manager, bob support."""
    runner = CliRunner()

    def invoke(actor: str, *args: str) -> Result:
        monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
        return runner.invoke(cli, ["--config", str(config), *args], prog_name="mailhygiene")

    for name, role in (("alice", "admin"), ("mia", "manager"), ("bob", "support")):
        assert invoke("alice", "user", "add", name, "--role", role).exit_code == 0
    return invoke


@pytest.fixture
def synced(run: Run, mailbox: ImapAccount) -> Run:
    """Anna in INBOX (a question, an invoice, a complaint) and Sent; Bertil elsewhere."""
    messages = {
        "INBOX": [
            ("Fråga om leverans", f"Anna Svensson <{ANNA}>", "support@promix.example", RECENT),
            ("Faktura 77", f"Anna <{ANNA.upper()}>", "support@promix.example", OLD),
            ("Reklamation REK-2026-0003", f"Anna <{ANNA}>", "support@promix.example", OLD),
            ("Hej", "Bertil <bertil@example.se>", "support@promix.example", RECENT),
        ],
        "Sent": [
            ("SV: Fråga om leverans", "support@promix.example", f"Anna <{ANNA}>", RECENT),
        ],
    }
    for folder, items in messages.items():
        append_messages(
            mailbox.host,
            mailbox.port,
            mailbox.username,
            mailbox.password,
            folder,
            [
                (message_bytes(subject=subject, from_=from_, to=to, date=when), (), when)
                for subject, from_, to, when in items
            ],
        )
    result = run("bob", "sync", "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    return run


def test_every_subject_command_documents_an_example_and_a_permission() -> None:
    for command in subject.commands.values():
        assert "Example: mailhygiene subject " in (command.help or ""), command.name
        assert any(p.name == "as_json" for p in command.params), command.name
    assert permission_of(subject.commands["find"]) is Permission.SUBJECT_FIND
    assert permission_of(subject.commands["export"]) is Permission.SUBJECT_EXPORT
    assert permission_of(subject.commands["erase"]) is Permission.SUBJECT_ERASE
    assert permission_of(subject.commands["requests"]) is Permission.SUBJECT_FIND


def test_find_lists_her_mail_with_what_keeps_it(synced: Run) -> None:
    refused = synced("bob", "subject", "find", ANNA)
    assert refused.exit_code == 3  # support staff may not look people up
    found = synced("mia", "subject", "find", ANNA.upper(), "--now", NOW, "--json")
    assert found.exit_code == 0, found.output
    body = json.loads(found.stdout)
    subjects = {m["subject"]: m for m in body["messages"]}
    assert set(subjects) == {
        "Fråga om leverans",
        "Faktura 77",
        "Reklamation REK-2026-0003",
        "SV: Fråga om leverans",
    }
    assert subjects["Faktura 77"]["reasons"][0]["name"] == "bookkeeping"
    assert subjects["Reklamation REK-2026-0003"]["reasons"][0]["kind"] == "case_open"
    assert body["request"].startswith("DSR-")
    human = synced("mia", "subject", "find", ANNA, "--also", "Bertil", "--server-search")
    assert human.exit_code == 0, human.output
    assert "5 message(s) for anna.svensson@example.se" in human.output
    searched = synced(
        "mia", "subject", "find", ANNA, "--also", "Bertil", "--server-search", "--json"
    )
    bertil = next(m for m in json.loads(searched.stdout)["messages"] if m["subject"] == "Hej")
    assert bertil["matched"] == [
        'subject or sender name contains "Bertil"',
        'text contains "Bertil" (server search)',
    ]


def test_export_is_for_admins_and_writes_a_package(synced: Run, tmp_path: Path) -> None:
    out = tmp_path / "anna"
    assert synced("mia", "subject", "export", ANNA, "--out", str(out)).exit_code == 3
    result = synced(
        "alice", "subject", "export", ANNA, "--out", str(out), "--request-ref", "B-1", "--json"
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert len(body["exported"]) == 4
    assert body["files"] == 7
    assert sorted(p.name for p in out.iterdir()) == [
        "index.csv",
        "index.json",
        "messages",
        "summary.html",
    ]
    again = synced("alice", "subject", "export", ANNA, "--out", str(out))
    assert again.exit_code == 1
    assert again.output.startswith("error: ")
    assert "not an empty directory" in again.output


def test_erase_goes_through_a_second_persons_approval(synced: Run) -> None:
    planned = synced(
        "alice", "subject", "erase", ANNA, "--request-ref", "B-2", "--now", NOW, "--json"
    )
    assert planned.exit_code == 0, planned.output
    body = json.loads(planned.stdout)
    assert body["to_erase"] == 2
    assert {(g["kind"], g["name"]) for g in body["kept"]} == {
        ("case_open", "REK-2026-0003"),
        ("rule", "bookkeeping"),
    }
    [plan] = [p["ref"] for p in body["plans"]]
    waiting = json.loads(synced("mia", "subject", "requests", "--now", NOW, "--json").stdout)
    assert [r["ref"] for r in waiting] == [body["request"]]
    assert waiting[0]["due_at"].startswith("2026-04-02T")
    assert waiting[0]["days_left"] == 31
    assert "awaits a second person" in waiting[0]["stage"]

    assert synced("alice", "purge", "approve", plan, "--now", NOW).exit_code == 3
    assert synced("mia", "purge", "approve", plan, "--now", NOW).exit_code == 0
    executed = synced("mia", "purge", "execute", plan, "--now", NOW, "--json")
    assert executed.exit_code == 0, executed.output
    assert json.loads(executed.stdout)["done"] == 2

    listed = synced("mia", "subject", "requests", "--now", NOW)
    assert listed.exit_code == 0
    assert body["request"] not in listed.output  # answered
    closed = json.loads(synced("mia", "subject", "requests", "--all", "--json").stdout)
    assert closed[0]["status"] == "done"
    assert closed[0]["stage"] == "erased 2 message(s)"
    left = json.loads(synced("mia", "subject", "find", ANNA, "--now", NOW, "--json").stdout)
    assert {m["subject"] for m in left["messages"]} == {"Faktura 77", "Reklamation REK-2026-0003"}


def test_erase_prints_a_letter(synced: Run) -> None:
    result = synced("alice", "subject", "erase", ANNA, "--request-ref", "B-3", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "Your request to erase your personal data (your reference: B-3)" in result.output
    assert "Erased: 2 message(s) (INBOX 1, Sent 1)" in result.output
    assert "complaint case REK-2026-0003" in result.output
    assert "bokföringslagen" in result.output
    assert "mailhygiene purge approve P-" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("subject", "find", "not-an-address"), 1, "is not an email address"),
        (("subject", "find", ANNA, "--also", " "), 1, "--also"),
        (("subject", "find", ANNA, "--server-search"), 2, "give at least one"),
        (("subject", "erase", ANNA), 2, "--request-ref"),
        (("subject", "erase", ANNA, "--request-ref", ""), 1, "needs --request-ref"),
        (("subject", "export", ANNA), 2, "--out"),
    ],
)
def test_bad_input_is_one_clear_line(
    synced: Run, args: tuple[str, ...], code: int, message: str
) -> None:
    result = synced("alice", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    if code == 1:
        assert result.output.count("\n") == 1
        assert result.output.startswith("error: ")


# -- restriction of processing ---------------------------------------------------

LATER = "2026-03-10T12:00:00Z"


def search_ids(run: Run, actor: str, query: str) -> set[str]:
    result = run(actor, "search", query, "--json")
    assert result.exit_code == 0, result.output
    return {m["subject"] for m in json.loads(result.output)["messages"]}


def restrict_anna(run: Run) -> dict[str, object]:
    result = run(
        "alice",
        "subject",
        "restrict",
        ANNA,
        "--basis",
        "bokföringslagen 7 kap. 2 § bars erasure",
        "--request-ref",
        "B-17",
        "--now",
        NOW,
        "--json",
    )
    assert result.exit_code == 0, result.output
    view: dict[str, object] = json.loads(result.output)
    return view


def test_the_commands_are_admin_only() -> None:
    for name in ("restrict", "unrestrict", "restrictions"):
        assert permission_of(subject.commands[name]) is Permission.SUBJECT_RESTRICT


def test_restricted_mail_is_hidden_from_staff_kept_and_reported(synced: Run) -> None:
    everyone = search_ids(synced, "bob", "addr:" + ANNA)
    assert "Faktura 77" in everyone

    refused = synced("mia", "subject", "restrict", ANNA, "--basis", "x")
    assert refused.exit_code == 3  # a manager may not restrict
    view = restrict_anna(synced)
    assert view["messages"] == 4  # three in INBOX, one in Sent

    for actor in ("bob", "mia"):
        assert search_ids(synced, actor, "addr:" + ANNA) == set()
        assert search_ids(synced, actor, "subject:faktura") == set()
        hidden = synced(actor, "explain", "subject:faktura")
        assert hidden.exit_code != 0
        assert "Traceback" not in hidden.output
    assert "Hej" in search_ids(synced, "bob", "from:bertil@example.se")  # others unaffected
    assert search_ids(synced, "alice", "addr:" + ANNA) == everyone  # admins still see it
    assert synced("alice", "explain", "subject:faktura", "--now", NOW).exit_code == 0

    # Kept: restriction changes nothing about retention, and nothing is planned for it.
    plan = synced("mia", "purge", "plan", "--now", NOW, "--json")
    assert plan.exit_code == 0, plan.output
    assert "Faktura 77" not in plan.output

    listed = synced("alice", "subject", "restrictions", "--json")
    [row] = json.loads(listed.output)
    assert (row["ref"], row["basis"], row["request_ref"]) == (
        view["ref"],
        "bokföringslagen 7 kap. 2 § bars erasure",
        "B-17",
    )
    audit = synced("alice", "audit", "log", "--json")
    assert "subject:restrict" in audit.output
    assert ANNA not in audit.output  # the audit log holds a hash, never the address


def test_mail_arriving_later_is_restricted_too_until_lifted(
    synced: Run, mailbox: ImapAccount
) -> None:
    view = restrict_anna(synced)
    when = datetime(2026, 3, 5, 9, tzinfo=UTC)
    raw = message_bytes(subject="Ny fråga", from_=f"Anna <{ANNA}>", to="s@x.example", date=when)
    append_messages(
        mailbox.host, mailbox.port, mailbox.username, mailbox.password, "INBOX", [(raw, (), when)]
    )
    assert synced("bob", "sync", "--now", LATER, "--json").exit_code == 0
    assert search_ids(synced, "bob", "subject:ny") == set()

    twice = synced("alice", "subject", "restrict", ANNA, "--basis", "again")
    assert twice.exit_code != 0
    assert "already restricted" in twice.output

    no_reason = synced("alice", "subject", "unrestrict", str(view["ref"]), "--reason", " ")
    assert no_reason.exit_code != 0
    assert "--reason is required" in no_reason.output
    lifted = synced("alice", "subject", "unrestrict", str(view["ref"]), "--reason", "settled")
    assert lifted.exit_code == 0, lifted.output
    assert search_ids(synced, "bob", "subject:ny") == {"Ny fråga"}
    assert json.loads(synced("alice", "subject", "restrictions", "--json").output) == []
    every = json.loads(synced("alice", "subject", "restrictions", "--all", "--json").output)
    assert [r["lifted_by"] for r in every] == ["alice"]


def test_a_malformed_address_is_one_clear_line(synced: Run) -> None:
    result = synced("alice", "subject", "restrict", "not-an-address", "--basis", "x")
    assert result.exit_code != 0
    assert "is not an email address" in result.output
    assert "Traceback" not in result.output
    unknown = synced("alice", "subject", "unrestrict", "RS-NOPE", "--reason", "x")
    assert unknown.exit_code != 0
    assert "no restriction RS-NOPE" in unknown.output


def test_old_invoice_stays_restricted_not_erased(synced: Run) -> None:
    """The barred invoice is kept by erasure and can then be restricted."""
    erased = synced("alice", "subject", "erase", ANNA, "--request-ref", "B-17", "--now", NOW)
    assert erased.exit_code == 0, erased.output
    assert "by law" in erased.output
    assert f"mailhygiene subject restrict {ANNA}" in erased.output  # the next step, named
    restrict_anna(synced)
    assert search_ids(synced, "bob", "subject:faktura") == set()
