"""``case …``, ``tag`` and ``untag`` through the CLI against a real Dovecot: human and
``--json`` output, roles, one-line errors and documented examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from mailhygiene.cli.auth import permission_of
from mailhygiene.cli.case_commands import COMMANDS, case
from mailhygiene.cli.main import cli
from mailhygiene.devtools import ImapAccount
from mailhygiene.devtools.mailbox import append_messages, message_bytes
from mailhygiene.roles import Permission

pytestmark = pytest.mark.dovecot

Run = Callable[..., Result]
NOW = "2026-03-02T12:00:00Z"
WHEN = datetime(2026, 2, 20, 9, tzinfo=UTC)
RULES = """\
version = 1
[retention]
default = "180d"
[cases]
pattern = 'REK-\\d{4}-\\d{4}'
keep_after_close = "90d"
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
    """``run(actor, *args)``: mailhygiene as ``actor``; alice is admin, bob support."""
    runner = CliRunner()

    def invoke(actor: str, *args: str) -> Result:
        monkeypatch.setenv("MAILHYGIENE_ACTOR", actor)
        return runner.invoke(cli, ["--config", str(config), *args], prog_name="mailhygiene")

    assert invoke("alice", "user", "add", "alice", "--role", "admin").exit_code == 0
    assert invoke("alice", "user", "add", "bob", "--role", "support").exit_code == 0
    return invoke


@pytest.fixture
def synced(run: Run, mailbox: ImapAccount) -> Run:
    """A complaint thread (INBOX + Sent, replies without the number) and one other mail."""
    messages = {
        "INBOX": [
            ("Reklamation REK-2025-0042: trasig lampa", "c0@kund.example.se", ()),
            ("SV: trasig lampa", "c2@kund.example.se", ("c0@kund.example.se", "c1@promix.example")),
            ("Fråga om leverans", "q0@kund.example.se", ()),
        ],
        "Sent": [
            (
                "SV: Reklamation REK-2025-0042: trasig lampa",
                "c1@promix.example",
                ("c0@kund.example.se",),
            ),
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
                (
                    message_bytes(
                        subject=subject,
                        from_="Anna <anna@kund.example.se>",
                        date=WHEN,
                        message_id=f"<{mid}>",
                        in_reply_to=f"<{refs[-1]}>" if refs else None,
                        references=[f"<{r}>" for r in refs],
                    ),
                    (),
                    WHEN,
                )
                for subject, mid, refs in items
            ],
        )
    result = run("bob", "sync", "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    return run


def test_every_case_command_documents_an_example_and_a_permission() -> None:
    commands: list[click.Command] = [*case.commands.values(), *COMMANDS[1:]]
    for command in commands:
        assert "Example: mailhygiene " in (command.help or ""), command.name
        assert permission_of(command) is not None, command.name
        assert any(p.name == "as_json" for p in command.params), command.name
    assert permission_of(case.commands["list"]) is Permission.READ
    assert permission_of(case.commands["show"]) is Permission.READ
    assert permission_of(case.commands["open"]) is Permission.CASE_MANAGE
    assert permission_of(COMMANDS[1]) is Permission.TAG


def test_sync_links_and_mirrors_then_show_and_list(synced: Run, mailbox: ImapAccount) -> None:
    # ``sync`` already threaded, linked (by the case number) and mirrored: ``case link``
    # finds nothing left to do.
    result = synced("bob", "case", "link", "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    [outcome] = json.loads(result.output)
    assert outcome["link"]["created_cases"] == []
    assert outcome["link"]["threaded"] == 0
    assert outcome["mirror"]["marked"] == 0

    shown = synced("bob", "case", "show", "rek-2025-0042", "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert detail["case"]["status"] == "open"
    assert detail["case"]["messages"] == 3
    assert detail["folders"] == {"support/INBOX": 2, "support/Sent": 1}
    assert all(m["has_keyword"] for m in detail["messages"])
    assert detail["threads"][0]["how"] == "pattern"
    assert detail["threads"][0]["linked_by"] == "bob"  # the person who ran the sync

    human = synced("bob", "case", "show", "REK-2025-0042")
    assert human.exit_code == 0
    assert "not while open" in human.output

    closed = synced("bob", "case", "close", "REK-2025-0042", "--reason", "klar", "--now", NOW)
    assert closed.exit_code == 0, closed.output
    assert "kept until 2026-05-31" in closed.output
    listed = json.loads(synced("bob", "case", "list", "--closed", "--json").output)
    assert [c["ref"] for c in listed] == ["REK-2025-0042"]
    assert listed[0]["protected_until"].startswith("2026-05-31T11:00")
    assert json.loads(synced("bob", "case", "list", "--open", "--json").output) == []
    assert synced("bob", "case", "reopen", "REK-2025-0042", "--now", NOW).exit_code == 0


def test_tag_and_untag_by_message_id_row_and_query(synced: Run) -> None:
    assert synced("bob", "case", "link", "--now", NOW, "--no-mirror").exit_code == 0
    opened = synced("bob", "case", "open", "REK-2025-0050", "--title", "Leverans", "--json")
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.output)["title"] == "Leverans"

    tagged = synced("bob", "tag", "<Q0@kund.example.se>", "--case", "REK-2025-0050", "--json")
    assert tagged.exit_code == 0, tagged.output
    body = json.loads(tagged.output)
    assert body["selection"]["kind"] == "message-id"
    assert len(body["linked"]) == 1

    again = synced("bob", "tag", 'subject:"Fråga om leverans"', "--case", "REK-2025-0050")
    assert again.exit_code == 0
    assert "already linked: 1" in again.output

    untagged = synced(
        "bob",
        "untag",
        "q0@kund.example.se",
        "--case",
        "REK-2025-0050",
        "--reason",
        "fel ärende",
        "--json",
    )
    assert untagged.exit_code == 0, untagged.output
    assert len(json.loads(untagged.output)["unlinked"]) == 1
    # A person may tag it again (by index id this time): an explicit decision.
    row = str(body["selection"]["message_rows"][0])
    retagged = synced("bob", "tag", row, "--case", "REK-2025-0050", "--json")
    assert retagged.exit_code == 0, retagged.output
    assert json.loads(retagged.output)["selection"]["kind"] == "row"

    review = synced("bob", "case", "review", "--json")
    assert review.exit_code == 0, review.output
    # The sync mirrored REK-2025-0042; nothing has mirrored the manual tag yet.
    assert {(i["kind"], i["case"]) for i in json.loads(review.output)} == {
        ("keyword_removed", "REK-2025-0050"),
    }
    mirrored = synced("bob", "case", "mirror", "--json")
    assert mirrored.exit_code == 0, mirrored.output
    assert json.loads(mirrored.output)[0]["marked"] == 1
    assert json.loads(synced("bob", "case", "review", "--json").output) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("case", "show", "REK-2025-9999"), 1, "no case REK-2025-9999"),
        (("case", "show", "lampan"), 1, "is not a case reference"),
        (("case", "open", "REK-25"), 1, "is not a case reference"),
        (("tag", "<nope@x.example>", "--case", "REK-2025-0042"), 1, "no indexed message"),
        (("tag", "subject:zzzz", "--case", "REK-2025-0042"), 1, "matches no indexed message"),
        (("tag", "bogus:field", "--case", "REK-2025-0042"), 1, "unknown field"),
        (("untag", "c0@kund.example.se", "--case", "REK-2025-0042"), 2, "--reason"),
    ],
)
def test_bad_input_is_one_clear_line(
    synced: Run, args: tuple[str, ...], code: int, message: str
) -> None:
    assert synced("bob", "case", "link", "--now", NOW, "--no-mirror").exit_code == 0
    result = synced("bob", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    if code == 1:
        assert result.output.count("\n") == 1
        assert result.output.startswith("error: ")


def test_unknown_user_is_refused(run: Run) -> None:
    result = run("mallory", "case", "open", "REK-2025-0042")
    assert result.exit_code == 3


def test_invalid_case_pattern_in_rules_is_a_config_error(run: Run, config: Path) -> None:
    (config.parent / "rules.toml").write_text(
        RULES.replace("'REK-\\d{4}-\\d{4}'", "'REK-(\\d{4}'"), encoding="utf-8"
    )
    result = run("bob", "case", "list")
    assert result.exit_code == 1
    assert "cases.pattern" in result.output
    assert "invalid regular expression" in result.output
    (config.parent / "rules.toml").write_text(
        RULES + 'keyword = "$Rek lamation"\n', encoding="utf-8"
    )
    result = run("bob", "case", "list")
    assert result.exit_code == 1
    assert "not a valid IMAP keyword" in result.output
